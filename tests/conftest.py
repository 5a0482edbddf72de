"""Test guards: hermetic by default, every module carries a tier marker, no keys, no dotenv."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

TIERS = {"unit", "contract", "flow", "live"}

# Tests never see real keys or proxies, and never read a developer's .env.
for _name in list(os.environ):
    if _name.endswith("_API_KEY") or _name.lower() in {"http_proxy", "https_proxy", "all_proxy"}:
        del os.environ[_name]
for _name in ("DATABASE_URL", "REDIS_URL", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "LIVEKIT_URL"):
    os.environ.pop(_name, None)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["LANGSMITH_TRACING"] = "false"
# One folder per test process (`make test` runs two, see REAL_STACK_DRILLS), so their SQLite files never meet.
os.environ.setdefault("SWITCHBOARD_DATA_DIR", f"/tmp/switchboard-test-data{os.environ.get('PYTEST_XDIST_WORKER', '')}")

REDIS_TEST_URL = os.environ.get("SWITCHBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_TEST_URL = os.environ.get(
    "SWITCHBOARD_TEST_POSTGRES_URL", "postgresql://switchboard:switchboard@127.0.0.1:5432/test"
)


# Modules that run calls through a real stack in real time (livekit-server, workers, WebRTC or SIP callers, a
# browser): most of their time is waiting on audio, not CPU. `make test` runs two processes (pytest-xdist); the
# scheduler below hands every one of these to one process as a single unit, first, while the other runs every other
# module. So one real-time stack runs at a time: two at once on 2 cores starved each other's audio (both run at
# MEDIA_NICE, above everything else), and a starved agent mishears (the SIP demo heard a word of "What's my balance?"
# wrong, and that call went nowhere). Each module stays whole in one process, so its module-scoped fixtures start
# once. (xdist's own `loadgroup` cannot do it on pytest 9: it renames node ids through an attribute pytest no
# longer reads.)
REAL_STACK_DRILLS = frozenset(
    {
        "test_agent_worker_drain",
        "test_bench_calls",
        "test_console_softphone",
        "test_escalation_vanish",
        "test_livekit_burst",
        "test_livekit_demo",
        "test_livekit_multinode",
        "test_real_livekit",
        "test_real_livekit_faults",
        "test_real_livekit_outages",
        "test_sip_calls",
        "test_sip_demo",
        "test_sip_real",
        "test_sip_transfer",
        "test_sipp_load",
    }
)
DRILLS_UNIT = "real-stack-drills"


def _unit_of(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return DRILLS_UNIT if Path(module).stem in REAL_STACK_DRILLS else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole modules per process, the real-stack drills together as one unit (xdist's hook)."""
    from xdist.scheduler import LoadScopeScheduling  # only a run with -n loads xdist's scheduler

    class ModulesWithDrillsTogether(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no type stubs
        def _split_scope(self, nodeid: str) -> str:
            return _unit_of(nodeid)

    return ModulesWithDrillsTogether(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _tiers_and_live(items)
    # The drills first: the longest chain of the run starts at once (a stable sort keeps each module's order).
    items.sort(key=lambda item: _unit_of(item.nodeid) != DRILLS_UNIT)


def _tiers_and_live(items: list[pytest.Item]) -> None:
    missing = sorted({item.module.__name__ for item in items if not TIERS & {m.name for m in item.iter_markers()}})  # type: ignore[attr-defined]
    if missing:
        raise pytest.UsageError(f"test modules without a tier marker (unit/contract/flow/live): {', '.join(missing)}")
    if not os.environ.get("SWITCHBOARD_LIVE"):
        for item in items:
            if item.get_closest_marker("live"):
                item.add_marker(pytest.mark.skip(reason="live tier: set SWITCHBOARD_LIVE=1 and real keys"))
