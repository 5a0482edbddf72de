"""Test guards: hermetic by default, every module carries a tier marker, no keys, no dotenv."""

from __future__ import annotations

import os

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


# Modules whose fixtures run calls through a real livekit-server in real time (fault drills, bursts, SIP phones):
# most of their time is waiting on audio, not CPU. `make test` runs two processes (pytest-xdist, --dist loadgroup):
# one takes these, one after another and first, while the other runs every other module; each module stays whole
# in one process, so its module-scoped fixtures start once.
REAL_STACK_DRILLS = frozenset(
    {
        "test_livekit_burst",
        "test_livekit_multinode",
        "test_real_livekit",
        "test_real_livekit_faults",
        "test_real_livekit_outages",
        "test_sip_calls",
        "test_sip_real",
        "test_sip_transfer",
    }
)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _tiers_and_live(items)
    for item in items:
        module: str = item.module.__name__  # type: ignore[attr-defined]  # every test item here has a module
        drill = module.rsplit(".", 1)[-1] in REAL_STACK_DRILLS
        item.add_marker(pytest.mark.xdist_group("real-stack-drills" if drill else module))
    # The drills first: the longest chain of the run starts at once (a stable sort keeps each module's order).
    items.sort(key=lambda item: item.get_closest_marker("xdist_group").args[0] != "real-stack-drills")  # type: ignore[union-attr]  # marked just above


def _tiers_and_live(items: list[pytest.Item]) -> None:
    missing = sorted({item.module.__name__ for item in items if not TIERS & {m.name for m in item.iter_markers()}})  # type: ignore[attr-defined]
    if missing:
        raise pytest.UsageError(f"test modules without a tier marker (unit/contract/flow/live): {', '.join(missing)}")
    if not os.environ.get("SWITCHBOARD_LIVE"):
        for item in items:
            if item.get_closest_marker("live"):
                item.add_marker(pytest.mark.skip(reason="live tier: set SWITCHBOARD_LIVE=1 and real keys"))
