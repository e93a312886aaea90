"""The code stays lint-clean and the layers of ARCHITECTURE.md hold (import-linter)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    p = BIN / name
    if p.exists():
        return str(p)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed (pip install -e '.[test]')")
    return found


def test_import_layers():
    r = subprocess.run([_tool("lint-imports")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff():
    r = subprocess.run([_tool("ruff"), "check", "kran", "tests", "bench"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("package", ["kran.engine", "kran.api"])
def test_every_module_is_placed_in_its_package_contract(package):
    """A module left out of its package's layers is not checked for cycles: each must be placed."""
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in cfg if c.get("containers") == [package]]
    placed = {m.strip() for layer in contract["layers"] for m in layer.split("|")}
    pkg_dir = REPO / package.replace(".", "/")
    modules = {p.stem for p in pkg_dir.glob("*.py") if p.stem != "__init__"}
    assert modules - placed == set(), f"place these in the {package} contract in pyproject.toml"
