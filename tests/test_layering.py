"""Dependencies point one way (STYLE §1): ``agi`` and ``rating`` know nothing of the
engine, ``prompts`` knows nothing of the rest; and the code passes ruff and mypy strict."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "agi": {"ivr", "rating", "prompts", "asterisk_sim"},
    # The simulated Asterisk is an independent peer: it must not borrow the engine's codec.
    "asterisk_sim": {"agi", "ivr", "rating", "prompts"},
    "rating": {"agi", "ivr", "prompts"},
    "prompts": {"agi", "ivr", "rating"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed in this environment")
    return found


def test_ruff_is_clean() -> None:
    result = subprocess.run([_tool("ruff"), "check", "--quiet", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    packages = ["agi", "asterisk_sim", "rating", "ivr", "prompts", "bench"]
    result = subprocess.run([_tool("mypy"), *(arg for p in packages for arg in ("-p", p))],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
