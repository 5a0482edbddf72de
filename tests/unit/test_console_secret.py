"""The console secret: a weak one is a warning on loopback and a refusal anywhere else, `serve` included."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from orchestrator.config import load_settings
from orchestrator.console.auth import (
    InsecureConsoleSecret,
    check_console_secret,
    console_secret_problem,
    is_loopback,
)

pytestmark = pytest.mark.unit

STRONG = "x" * 32


def test_the_development_default_and_short_secrets_are_weak() -> None:
    default = console_secret_problem(load_settings())
    assert default is not None
    assert default.startswith("SWITCHBOARD_CONSOLE_SECRET is the development default")
    short = console_secret_problem(load_settings(console_secret="0123456789abcdef"))
    assert short is not None
    assert short.startswith("SWITCHBOARD_CONSOLE_SECRET is shorter than 32 characters")
    assert console_secret_problem(load_settings(console_secret=STRONG)) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "203.0.113.9", "api.example.com", ""])
def test_addresses_others_can_reach(host: str) -> None:
    assert not is_loopback(host)


def test_a_weak_secret_is_a_warning_on_loopback_and_refused_elsewhere() -> None:
    weak = load_settings()
    warning = check_console_secret(weak, host="127.0.0.1")
    assert warning is not None
    assert "SWITCHBOARD_CONSOLE_SECRET" in warning
    with pytest.raises(InsecureConsoleSecret, match=r"refusing to serve the console on 0\.0\.0\.0: SWITCHBOARD_"):
        check_console_secret(weak, host="0.0.0.0")
    strong = load_settings(console_secret=STRONG)
    assert check_console_secret(strong, host="0.0.0.0") is None
    assert check_console_secret(strong, host="127.0.0.1") is None


def test_serve_refuses_a_weak_secret_on_a_public_address_before_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import app

    monkeypatch.delenv("SWITCHBOARD_CONSOLE_SECRET", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 2, result.output
    assert "refusing to serve the console on 0.0.0.0" in result.output
    assert "SWITCHBOARD_CONSOLE_SECRET is the development default" in result.output
