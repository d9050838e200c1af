"""Dependencies point one way: auditapp <- annotations <- accounts <- judges <- studies <- reports.

Each package may import only itself and the packages before it. The project's URL and settings
modules are the one place that wires every app together, so they are exempt.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["auditapp", "annotations", "accounts", "judges", "studies", "reports"]
WIRING = {ROOT / "auditapp" / "urls.py", ROOT / "auditapp" / "settings"}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(LAYERS)


def _exempt(path: Path) -> bool:
    return any(path == w or w in path.parents for w in WIRING)


@pytest.mark.parametrize("package", LAYERS)
def test_package_imports_only_earlier_layers(package):
    allowed = set(LAYERS[: LAYERS.index(package) + 1])
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts or _exempt(path):
            continue
        for imported in _imported_packages(path) - allowed:
            wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert wrong == []


def test_the_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from reports.collect import collect\nimport judges.tasks\n")
    assert _imported_packages(bad) == {"reports", "judges"}
