"""The workspace's layering: the policy crate depends on no I/O crate, the
simulator on no server crate, and no crate's modules import each other in a
circle (scripts/import-graph.py)."""

import importlib.util
import pathlib
import re
import tempfile
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import-graph.py")
import_graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_graph)

IO_CRATES = {"tokio", "rdkafka", "tonic", "reqwest", "axum", "lagrate", "kafka-settings", "kafka-admin"}


def dependencies(crate: str) -> set[str]:
    """The names in a crate's [dependencies] table (not dev-dependencies)."""
    text = (ROOT / crate / "Cargo.toml").read_text()
    table = re.search(r"^\[dependencies\]\n(.*?)(?=^\[|\Z)", text, flags=re.S | re.M)
    return set(re.findall(r"^([\w-]+)\s*[.=]", table.group(1) if table else "", flags=re.M))


class Layering(unittest.TestCase):
    def test_the_policy_crate_depends_on_serialization_alone(self):
        self.assertEqual(dependencies("policy"), {"serde", "schemars"})

    def test_the_simulator_depends_on_the_policy_and_no_server_crate(self):
        deps = dependencies("simulator")
        self.assertIn("lagrate-policy", deps)
        self.assertEqual(deps & IO_CRATES, set())

    def test_no_crate_has_an_import_circle(self):
        for folder in import_graph.crate_folders():
            with self.subTest(crate=folder.name):
                _, found = import_graph.crate_graph(folder)
                self.assertEqual(found, [])

    def test_a_circle_is_found_through_crate_super_and_a_child_named_by_its_parent(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = pathlib.Path(tmp) / "src"
            (src / "c").mkdir(parents=True)
            (src / "lib.rs").write_text("mod a;\nmod b;\nmod c;\n")
            (src / "a.rs").write_text("use crate::b::X;\npub struct Y;\n")
            (src / "b.rs").write_text("use super::a::{Y};\npub struct X;\n")
            (src / "c" / "mod.rs").write_text("mod d;\npub struct Z(d::W);\n")
            (src / "c" / "d.rs").write_text("pub struct W;\n#[cfg(test)]\nmod tests { use super::super::Z; }\n")
            graph, found = import_graph.crate_graph(pathlib.Path(tmp))
            self.assertEqual(found, [[("a",), ("b",)]])
            self.assertEqual(graph[("c",)], {("c", "d")})
            self.assertEqual(graph[("c", "d")], set(), "a test module may use anything")


if __name__ == "__main__":
    unittest.main()
