"""Invalid settings fail at start-up with a message that names the variable."""

from __future__ import annotations

import pytest

from orchestrator.config import SettingsError, load_settings

pytestmark = pytest.mark.unit


def test_defaults_are_the_embedded_default() -> None:
    settings = load_settings()
    assert settings.sqlalchemy_url.startswith("sqlite+aiosqlite:///")
    assert settings.redis_url is None
    assert not settings.llm_configured


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("SWITCHBOARD_ROUTER_THRESHOLD", "2", "SWITCHBOARD_ROUTER_THRESHOLD"),
        ("SWITCHBOARD_TENANT_TIMEZONE", "Mars/Olympus", "SWITCHBOARD_TENANT_TIMEZONE"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
        ("SWITCHBOARD_QUEUE_MAX_DEPTH", "-1", "SWITCHBOARD_QUEUE_MAX_DEPTH"),
        ("SWITCHBOARD_TRANSFER_SIP_URI", "desk.example.com", "SWITCHBOARD_TRANSFER_SIP_URI"),
    ],
)
def test_invalid_setting_is_named(monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_postgres_url_is_mapped_to_the_async_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    assert load_settings().sqlalchemy_url == "postgresql+psycopg://postgres@127.0.0.1:5432/test"
