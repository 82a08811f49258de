"""The documentation's links: every relative link of every Markdown file in
the repository names a file or folder that exists, and every #anchor a
heading of the page it points to (GitHub's anchor rules)."""

import pathlib
import re
import subprocess
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files() -> list[pathlib.Path]:
    """The Markdown files git tracks or would track (not ignored ones)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def prose(text: str) -> str:
    """The page without its fenced code blocks (links there are code)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(page: pathlib.Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    found: set[str] = set()
    for line in prose(page.read_text()).splitlines():
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
            found.add(slug)
    return found


def broken_links(page: pathlib.Path) -> list[str]:
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto: ...
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    return broken


class Links(unittest.TestCase):
    def test_every_relative_link_resolves(self):
        pages = markdown_files()
        self.assertIn(ROOT / "README.md", pages)
        for page in pages:
            with self.subTest(page=str(page.relative_to(ROOT))):
                self.assertEqual(broken_links(page), [])

    def test_every_page_under_docs_is_reachable_from_the_readme(self):
        readme = (ROOT / "README.md").read_text()
        for page in sorted((ROOT / "docs").glob("*.md")):
            with self.subTest(page=page.name):
                self.assertIn(f"](docs/{page.name}", readme)

    def test_a_broken_link_and_a_missing_anchor_are_reported(self):
        page = ROOT / "target" / "docs-link-check.md"
        page.parent.mkdir(exist_ok=True)
        page.write_text("# Title\n\n[gone](no-such-file.md) [here](#title) [there](#nowhere)\n")
        try:
            self.assertEqual(
                broken_links(page),
                ["no-such-file.md: no such file", "#nowhere: no heading with that anchor"],
            )
        finally:
            page.unlink()


if __name__ == "__main__":
    unittest.main()
