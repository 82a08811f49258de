"""Dockerfile: one build, three images; pinned bases, a locked release build,
a distroless non-root runtime, and the names the manifests and ECR expect."""

import re
import tomllib
import unittest

from repo import ROOT, container, ecr_images, find, rendered

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stages():
    """[(base, name)] for every FROM line, in order."""
    return re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", DOCKERFILE, re.M | re.I)


def stage_body(name):
    start = re.search(rf"^FROM\s+\S+\s+AS\s+{re.escape(name)}\s*$", DOCKERFILE, re.M)
    rest = DOCKERFILE[start.end():]
    end = re.search(r"^FROM\s", rest, re.M)
    return rest[: end.start()] if end else rest


class Dockerfile(unittest.TestCase):
    def test_external_bases_are_pinned_by_digest(self):
        names = set()
        for base, name in stages():
            with self.subTest(stage=name or base):
                if base not in names:
                    self.assertRegex(base, r"^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")
                names.add(name)

    def test_build_and_runtime_share_the_debian_release(self):
        # The binaries link glibc and libssl3 dynamically: the runtime must
        # carry the versions of the build image (Debian 12, "bookworm").
        bases = dict((n, b) for b, n in stages())
        self.assertIn("bookworm", bases["build"])
        self.assertIn("debian12", bases["runtime"])
        self.assertIn("LIBZ_SYS_STATIC=1", DOCKERFILE, "distroless has no zlib")

    def test_release_build_is_locked(self):
        self.assertRegex(DOCKERFILE, r"cargo build --locked --release")

    def test_every_image_runs_distroless_as_non_root(self):
        runtime = stage_body("runtime")
        self.assertRegex(runtime, r"(?m)^USER 65532:65532$", "runtime stage sets a numeric non-root user")
        runtime_base = dict((n, b) for b, n in stages())["runtime"]
        self.assertIn("distroless", runtime_base)
        for image in ("lagrate", "trade-tx-consumer", "trade-tx-producer"):
            with self.subTest(image=image):
                self.assertIn(("runtime", image), stages())
                self.assertNotRegex(stage_body(image), r"^USER\s+(0|root)\b", "an image switches back to root")

    def test_targets_are_the_ecr_repositories_and_the_manifest_images(self):
        targets = {name for _, name in stages()} - {"build", "runtime"}
        self.assertEqual(targets, ecr_images())
        images = {container(d)["image"] for d in find(rendered("base"), "Deployment")}
        self.assertEqual(images, targets)

    def test_each_image_ships_a_binary_the_workspace_builds(self):
        workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
        binaries = set()
        for member in workspace:
            manifest = tomllib.loads((ROOT / member / "Cargo.toml").read_text())
            binaries.update(b["name"] for b in manifest.get("bin", []))
            if (ROOT / member / "src" / "main.rs").exists():
                binaries.add(manifest["package"]["name"])
        for target in ("lagrate", "trade-tx-consumer", "trade-tx-producer"):
            copied = re.search(r"COPY --from=build /out/(\S+) ", stage_body(target)).group(1)
            entry = re.search(r'ENTRYPOINT \["/usr/local/bin/(\S+)"\]', stage_body(target)).group(1)
            self.assertEqual(copied, entry)
            self.assertIn(copied, binaries)


if __name__ == "__main__":
    unittest.main()
