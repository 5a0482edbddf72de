"""Served secrets: a weak one is a warning on loopback and a refusal anywhere else, `serve` included."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from orchestrator.api.secret_policy import InsecureSecrets, check_served_secrets, is_loopback, secret_problems
from orchestrator.config import load_settings

pytestmark = pytest.mark.unit

STRONG = {"console_secret": "c" * 32, "intake_secret": "i" * 32, "livekit_api_secret": "l" * 32}


def test_the_development_defaults_and_short_secrets_are_weak() -> None:
    defaults = secret_problems(load_settings())
    assert [p.split(" is ", 1)[0] for p in defaults] == [
        "SWITCHBOARD_CONSOLE_SECRET",
        "SWITCHBOARD_INTAKE_SECRET",
        "LIVEKIT_API_SECRET",
    ]
    assert all("is the development default, which is public" in p for p in defaults)
    short = secret_problems(load_settings(**{**STRONG, "intake_secret": "0123456789abcdef"}))
    assert short == [short[0]]
    assert short[0].startswith("SWITCHBOARD_INTAKE_SECRET is shorter than 32 characters")
    assert "the signatures on POST /v1/calls prove nothing" in short[0]
    assert secret_problems(load_settings(**STRONG)) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "203.0.113.9", "api.example.com", ""])
def test_addresses_others_can_reach(host: str) -> None:
    assert not is_loopback(host)


def test_a_weak_secret_is_a_warning_on_loopback_and_refused_elsewhere() -> None:
    weak = load_settings(**{**STRONG, "console_secret": "short"})
    (warning,) = check_served_secrets(weak, host="127.0.0.1")
    assert warning.startswith("SWITCHBOARD_CONSOLE_SECRET is shorter")
    with pytest.raises(InsecureSecrets, match=r"refusing to serve on 0\.0\.0\.0: SWITCHBOARD_CONSOLE_SECRET"):
        check_served_secrets(weak, host="0.0.0.0")
    strong = load_settings(**STRONG)
    assert check_served_secrets(strong, host="0.0.0.0") == []
    assert check_served_secrets(strong, host="127.0.0.1") == []


def test_serve_refuses_weak_secrets_on_a_public_address_before_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import app

    for name in ("SWITCHBOARD_CONSOLE_SECRET", "SWITCHBOARD_INTAKE_SECRET", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 2, result.output
    assert "refusing to serve on 0.0.0.0" in result.output
    for name in ("SWITCHBOARD_CONSOLE_SECRET", "SWITCHBOARD_INTAKE_SECRET", "LIVEKIT_API_SECRET"):
        assert f"{name} is the development default" in result.output
