"""The house layout holds: layers import one way, no library is used through its private parts,
and no module grows past one job's size."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "crm",
    "simulator",
    "features",
    "training",
    "serving",
    "reports",
    "monitoring",
    "crm_intel",
)
MAX_MODULE_LINES = 600
LONG_MODULES_ALLOWED: set[str] = set()


def package_modules(extra: tuple[str, ...] = ()) -> list[Path]:
    return sorted(p for name in (*PACKAGES, *extra) for p in (ROOT / name).rglob("*.py"))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reads(source: str) -> list[tuple[int, str]]:
    """(line, text) of every read of a ``_``-prefixed name on something other than self/cls:
    ``obj._x``, ``getattr(obj, "_x")`` and ``from module import _x``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append((node.lineno, ast.unparse(node)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
        ):
            owner = node.args[0]
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if _is_private(alias.name):
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
    return found


def test_the_private_read_check_has_teeth():
    # Given the reads the old online store made into Feast
    source = (
        "online = store._get_provider().online_store\n"
        "conn = online._get_conn(config)\n"
        "conn2 = getattr(online, '_conn', None)\n"
        "from feast.infra.online_stores.sqlite import _table_id\n"
        "ok = self._views, cls._cache, module.__version__, obj.public\n"
    )
    # Then each is found, and reads on self/cls and dunders are not
    assert sorted(line for line, _ in private_reads(source)) == [1, 2, 3, 4]


def test_no_package_reads_a_private_attribute_of_another_object():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for path in package_modules(extra=("benchmarks",))
        for line, text in private_reads(path.read_text())
    ]
    assert offenders == []


def test_no_module_holds_more_than_one_jobs_worth_of_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in package_modules()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert set(long) <= LONG_MODULES_ALLOWED, long


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    return subprocess.run(
        [exe, "--no-cache"],
        cwd=root,
        env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_layers_contract_names_every_top_level_package():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    named = {p.strip() for layer in layers for p in layer.split("|")}
    assert named == set(PACKAGES) == set(config["root_packages"])


@pytest.mark.slow
def test_a_wrong_way_import_breaks_the_layers_contract(tmp_path):
    # Given a copy of the packages in which the CRM data layer imports the service
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    assert _lint_imports(copy).returncode == 0  # the copy itself keeps the contract
    io_module = copy / "crm" / "io.py"
    io_module.write_text(io_module.read_text() + "\nfrom serving import scoring  # wrong way\n")
    # When lint-imports checks it
    result = _lint_imports(copy)
    # Then the contract is broken and the offending import is named
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "crm.io -> serving" in result.stdout
