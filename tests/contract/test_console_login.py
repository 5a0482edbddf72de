"""Login throttling on a real server and Redis: lockouts per user and per address, admin unlocks, the audit trail."""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from typer.testing import CliRunner

from orchestrator.api import create_app
from orchestrator.config import load_settings
from orchestrator.console.auth import LOGIN_LOCKOUT_S, LOGIN_MAX_ADDRESS_FAILURES, LOGIN_MAX_USER_FAILURES
from tests.conftest import REDIS_TEST_URL
from tests.console_app import ServedApp, served

pytestmark = pytest.mark.contract

PASSWORD = "correct horse battery"
PREFIX = f"login-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def server() -> Iterator[ServedApp]:
    settings = load_settings(redis_url=REDIS_TEST_URL, data_dir=tempfile.mkdtemp(prefix="sb-login-"))
    with served(create_app(settings, queue_prefix=PREFIX)) as srv:
        for name, role in (("lou", "supervisor"), ("max", "supervisor"), ("ada", "admin")):
            srv.add_user(name, PASSWORD, role)  # type: ignore[arg-type]  # the literal roles
        yield srv
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        keys = list(client.scan_iter(f"{PREFIX}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def client_from(server: ServedApp, address: str) -> httpx.Client:
    """A client whose address the server sees as ``address`` (uvicorn trusts X-Forwarded-For from loopback)."""
    return httpx.Client(base_url=server.url, timeout=10, headers={"X-Forwarded-For": address})


def login(client: httpx.Client, username: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/v1/console/login", json={"username": username, "password": password})


def admin(server: ServedApp) -> httpx.Client:
    token = server.create_token("ada")
    return httpx.Client(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {token}"})


def audit(server: ServedApp, username: str) -> list[tuple[str, str, str, str]]:
    """``(action, role, outcome, detail)`` of the user's audit entries, oldest first."""
    r = admin(server).get("/v1/console/audit", params={"username": username})
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["entries"]
    return [(e["action"], e["role"], e["outcome"], e["detail"]) for e in reversed(entries)]


def test_a_user_is_locked_out_after_repeated_failures_until_an_admin_unlocks(server: ServedApp) -> None:
    client = client_from(server, "127.0.0.11")
    for _ in range(LOGIN_MAX_USER_FAILURES):
        assert login(client, "lou", "wrong password").status_code == 401
    locked = login(client, "lou")  # the right password
    assert locked.status_code == 429, locked.text
    assert 0 < int(locked.headers["Retry-After"]) <= LOGIN_LOCKOUT_S
    assert locked.json()["error"]["code"] == "too_many_attempts"
    # Another address does not get in either: the lockout is the user's.
    assert login(client_from(server, "127.0.0.12"), "lou").status_code == 429

    assert admin(server).post("/v1/console/users/lou/unlock").status_code == 200
    assert login(client, "lou").status_code == 200

    entries = audit(server, "lou")
    failed = [e for e in entries if e[0] == "login_failed"]
    assert [(a, role, outcome) for a, role, outcome, _ in failed] == [("login_failed", "anonymous", "refused")] * 7
    assert all(e[3].startswith("wrong credentials; from 127.0.0.11") for e in failed[:LOGIN_MAX_USER_FAILURES])
    assert [e[3] for e in failed[LOGIN_MAX_USER_FAILURES:]] == [
        "locked out; from 127.0.0.11",
        "locked out; from 127.0.0.12",
    ]
    # In order: the failures, the lockout at the last of them, the refusals, the login once unlocked.
    actions = [e[0] for e in entries]
    assert actions == ["login_failed"] * 5 + ["login_locked"] + ["login_failed"] * 2 + ["login"]
    unlocks = [e for e in audit(server, "ada") if e[0] == "unlock"]
    assert ("unlock", "admin", "ok", "user lou") in unlocks


def test_a_locked_out_name_is_answered_alike_whether_or_not_it_exists(server: ServedApp) -> None:
    client = client_from(server, "127.0.0.13")
    answers = {}
    for name in ("max", "nobody-by-this-name"):
        for _ in range(LOGIN_MAX_USER_FAILURES):
            assert login(client, name, "wrong password").status_code == 401
        r = login(client, name, "wrong password")
        answers[name] = (r.status_code, r.json())
    assert answers["max"] == answers["nobody-by-this-name"]
    assert answers["max"][0] == 429
    admin(server).post("/v1/console/users/max/unlock")


def test_an_address_is_locked_out_after_failures_across_users(server: ServedApp) -> None:
    attacker = client_from(server, "127.0.0.14")
    for i in range(LOGIN_MAX_ADDRESS_FAILURES):
        assert login(attacker, f"guess-{i}", "wrong password").status_code == 401
    refused = login(attacker, "max")  # a real user, the right password, from that address
    assert refused.status_code == 429
    assert login(client_from(server, "127.0.0.15"), "max").status_code == 200  # elsewhere, max gets in

    assert admin(server).post("/v1/console/addresses/127.0.0.14/unlock").status_code == 200
    assert login(attacker, "max").status_code == 200
    locked = [e for e in audit(server, f"guess-{LOGIN_MAX_ADDRESS_FAILURES - 1}") if e[0] == "login_locked"]
    assert locked == [
        ("login_locked", "system", "ok", f"address 127.0.0.14 locked out for {LOGIN_LOCKOUT_S} s after failed logins")
    ]


def test_successful_logins_do_not_lock_a_shared_address(server: ServedApp) -> None:
    office = client_from(server, "127.0.0.16")
    for _ in range(LOGIN_MAX_ADDRESS_FAILURES + 5):
        assert login(office, "max").status_code == 200


def test_the_login_form_is_throttled_too(server: ServedApp) -> None:
    client = client_from(server, "127.0.0.17")

    def form_login(password: str) -> httpx.Response:
        page = client.get("/console/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        body = {"username": "lou", "password": password, "csrf_token": token.group(1), "next": "/console/calls"}
        return client.post("/console/login", data=body, follow_redirects=False)

    for _ in range(LOGIN_MAX_USER_FAILURES):
        assert form_login("wrong password").status_code == 401
    locked = form_login(PASSWORD)
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.text
    assert int(locked.headers["Retry-After"]) > 0
    admin(server).post("/v1/console/users/lou/unlock")
    assert form_login(PASSWORD).status_code == 303


def test_unlock_is_for_admins(server: ServedApp) -> None:
    supervisor = client_from(server, "127.0.0.18")
    r = login(supervisor, "max")
    assert r.status_code == 200
    csrf = {"X-CSRF-Token": r.json()["csrf_token"]}
    assert supervisor.post("/v1/console/users/lou/unlock", headers=csrf).status_code == 403


def test_the_cli_unlocks_a_user(server: ServedApp, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import app

    client = client_from(server, "127.0.0.19")
    for _ in range(LOGIN_MAX_USER_FAILURES):
        login(client, "lou", "wrong password")
    assert login(client, "lou").status_code == 429

    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(server.app.state.settings.data_dir))
    monkeypatch.setenv("REDIS_URL", REDIS_TEST_URL)
    result = CliRunner().invoke(app, ["users", "unlock", "lou", "--prefix", PREFIX])
    assert result.exit_code == 0, result.output
    assert "user lou: unlocked" in result.output
    assert login(client, "lou").status_code == 200
    assert ("unlock", "system", "ok", "user lou") in audit(server, "cli")
