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
os.environ.setdefault("SWITCHBOARD_DATA_DIR", "/tmp/switchboard-test-data")

REDIS_TEST_URL = os.environ.get("SWITCHBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_TEST_URL = os.environ.get(
    "SWITCHBOARD_TEST_POSTGRES_URL", "postgresql://switchboard:switchboard@127.0.0.1:5432/test"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = sorted({item.module.__name__ for item in items if not TIERS & {m.name for m in item.iter_markers()}})  # type: ignore[attr-defined]
    if missing:
        raise pytest.UsageError(f"test modules without a tier marker (unit/contract/flow/live): {', '.join(missing)}")
    if not os.environ.get("SWITCHBOARD_LIVE"):
        for item in items:
            if item.get_closest_marker("live"):
                item.add_marker(pytest.mark.skip(reason="live tier: set SWITCHBOARD_LIVE=1 and real keys"))
