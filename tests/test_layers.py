"""Imports only point down the layers of DESIGN.md (import-linter cannot read this layout:
`xaynet.coordinator`/`xaynet.operator` come from folders without a top-level __init__.py).

    xaynet.cli, xaynet.testdrive      may import anything
    xaynet.operator                   talks to the coordinator over HTTP: core, plus coordinator
                                      settings (to render config.toml) and store (finalizer)
    xaynet.coordinator, xaynet.sdk    core only; never each other
    xaynet.core                       nothing of ours above it
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "xaynet.core": ROOT / "xaynet" / "core",
    "xaynet.sdk": ROOT / "xaynet" / "sdk",
    "xaynet.coordinator": ROOT / "coordinator",
    "xaynet.operator": ROOT / "operator",
}
ALLOWED = {
    "xaynet.core": {"xaynet.core"},
    "xaynet.sdk": {"xaynet.core", "xaynet.sdk"},
    "xaynet.coordinator": {"xaynet.core", "xaynet.coordinator"},
    # The operator renders the coordinator's settings and, in its finalizer, removes a round's
    # keys through the coordinator's own Redis store (one definition of the key layout).
    "xaynet.operator": {
        "xaynet.core",
        "xaynet.operator",
        "xaynet.coordinator.settings",
        "xaynet.coordinator.store",
    },
}


def imported_modules(path: Path) -> set[str]:
    """Every `xaynet.*` module a file imports, at top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "xaynet" or name.startswith("xaynet.")}


def violations(layer: str, folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for module in imported_modules(path):
            if not any(module == ok or module.startswith(ok + ".") for ok in ALLOWED[layer]):
                found.append(f"{path.relative_to(folder)} imports {module}")
    return found


@pytest.mark.parametrize("layer", sorted(FOLDERS))
def test_layer_imports_point_down(layer: str) -> None:
    assert violations(layer, FOLDERS[layer]) == []


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("def f():\n    from xaynet.coordinator import app\n")
    assert violations("xaynet.sdk", tmp_path) == ["bad.py imports xaynet.coordinator"]
