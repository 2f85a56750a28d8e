"""Package boundaries (ARCHITECTURE.md): generator/ never imports the harness, metrics/ never
imports generator/ or the harness, reports/ never runs models (no generator/, metrics/, torch)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "generator": {"vbench_flow", "reports"},
    "metrics": {"vbench_flow", "generator", "reports"},
    "reports": {"vbench_flow", "generator", "metrics", "torch", "torchvision", "open_clip"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """Top-level package of every import in the file (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_never_imports_what_it_must_not(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    crossings = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in files for name, line in imported_packages(path) if name in FORBIDDEN[package]]
    assert not crossings, "\n".join(crossings)


def test_the_check_sees_function_level_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from vbench_flow.runner import Runner\n    import torch.nn\n")
    assert imported_packages(probe) == {("vbench_flow", 2), ("torch", 3)}
