"""`switchboard sip setup` against a real livekit-server with the Redis its SIP API keeps trunks and rules in."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.devstack.sip import SipApiServer, sip_api_server
from orchestrator.devstack.stack import LIVEKIT_SERVER

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: run deploy/dev/tools.sh (make tools)"),
    pytest.mark.timeout(300),
]

ROOT = Path(__file__).resolve().parents[2]
NUMBER = "+15550109999"  # the trunk's number: the number callers dial
RULE_NAME = "switchboard-calls"


def run_setup(server: SipApiServer | None, *args: str, secret: str | None = None, url: str | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    env.update(
        LIVEKIT_URL=url or (server.url.replace("http://", "ws://") if server else ""),
        LIVEKIT_API_KEY=server.key if server else "devkey",
        LIVEKIT_API_SECRET=secret or (server.secret if server else "x" * 32),
        PYTHONWARNINGS="ignore",
    )
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "sip", "setup", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def server_objects(server: SipApiServer) -> tuple[list[Any], list[Any]]:
    from livekit import api

    async def read() -> tuple[list[Any], list[Any]]:
        lk = api.LiveKitAPI(server.url, server.key, server.secret)
        try:
            trunks = (await lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())).items
            rules = (await lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items
            return list(trunks), list(rules)
        finally:
            await lk.aclose()

    return asyncio.run(read())


def one_line(done: Any) -> str:
    """The command's one line on stderr (and no traceback)."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return str(lines[0])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SipApiServer]:
    with sip_api_server(tmp_path_factory.mktemp("sip-api")) as running:
        yield running


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SipApiServer]:
    with sip_api_server(tmp_path_factory.mktemp("sip-api-bare"), with_redis=False) as running:
        yield running


def test_bad_input_is_refused_before_anything_is_created(server: SipApiServer) -> None:
    cases = [
        ((), "--number"),
        (("--number", "call me"), "not a phone number"),
        (("--allowed-address", "10.0.0.300"), "not an IP address"),
        (("--number", NUMBER, "--room-prefix", "call rooms"), "--room-prefix"),
    ]
    for args, words in cases:
        done = run_setup(server, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert words in one_line(done), (args, done.stderr)
    assert server_objects(server) == ([], [])


def test_setup_creates_the_trunk_and_a_rule_that_keeps_callers_numbers_out_of_room_names(server: SipApiServer) -> None:
    from orchestrator.api.livekit_events import starts_call

    first = run_setup(server, "--number", NUMBER, "--allowed-address", "10.213.0.0/16", "--json")
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)
    assert (created["trunk_created"], created["rule_created"]) == (True, True)
    assert created["numbers"] == [NUMBER]
    assert created["room_prefix"] == "call-"
    again = run_setup(server, "--number", NUMBER, "--allowed-address", "10.213.0.0/16", "--json")
    assert again.returncode == 0, again.stderr
    found = json.loads(again.stdout)
    assert (found["trunk_created"], found["rule_created"]) == (False, False)
    assert (found["trunk_id"], found["rule_id"]) == (created["trunk_id"], created["rule_id"])
    # The server holds exactly one of each: the second run created nothing.
    trunks, rules = server_objects(server)
    assert [t.sip_trunk_id for t in trunks] == [created["trunk_id"]]
    assert [r.sip_dispatch_rule_id for r in rules] == [created["rule_id"]]
    [rule] = rules
    assert list(rule.trunk_ids) == [created["trunk_id"]]
    # A callee rule with randomize: livekit names each call's room <prefix>_<number dialled>_<random>, the
    # trunk's own number, where an individual rule puts the caller's number in every room name (and so in
    # call jobs, logs, webhooks and metrics). The caller's number still reaches the call as sip.phoneNumber.
    assert rule.rule.HasField("dispatch_rule_callee"), rule
    callee = rule.rule.dispatch_rule_callee
    assert (callee.room_prefix, callee.randomize, callee.pin) == ("call-", True, "")
    assert not rule.hide_phone_number
    # Our webhook admits such a room as a call.
    from livekit.protocol.models import Room
    from livekit.protocol.webhook import WebhookEvent

    event = WebhookEvent(event="room_started", room=Room(sid="RM_x", name=f"call-_{NUMBER}_abcdef"))
    assert starts_call(event, "call-")
    text = run_setup(server, "--number", NUMBER)
    assert text.returncode == 0, text.stderr
    assert "found" in text.stdout, text.stdout
    assert "created" not in text.stdout, text.stdout
    assert "<number dialled>" in text.stdout, text.stdout


def test_a_rule_that_named_rooms_by_the_callers_number_is_replaced_in_place(server: SipApiServer) -> None:
    from livekit import api

    async def individual_rule() -> str:
        # What `sip setup` made before: an individual rule, rooms named <prefix>_<caller's number>_<random>.
        lk = api.LiveKitAPI(server.url, server.key, server.secret)
        try:
            trunks = (await lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())).items
            for rule in (await lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items:
                await lk.sip.delete_dispatch_rule(
                    api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=rule.sip_dispatch_rule_id)
                )
            individual = api.SIPDispatchRule(
                dispatch_rule_individual=api.SIPDispatchRuleIndividual(room_prefix="call-")
            )
            info = api.SIPDispatchRuleInfo(name=RULE_NAME, trunk_ids=[trunks[0].sip_trunk_id], rule=individual)
            made = await lk.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(dispatch_rule=info))
            return str(made.sip_dispatch_rule_id)
        finally:
            await lk.aclose()

    if not server_objects(server)[0]:
        assert run_setup(server, "--number", NUMBER).returncode == 0
    old_id = asyncio.run(individual_rule())
    done = run_setup(server, "--number", NUMBER, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["rule_id"], out["rule_created"], out["rule_updated"]) == (old_id, False, True)
    [rule] = server_objects(server)[1]
    assert rule.sip_dispatch_rule_id == old_id
    assert rule.rule.HasField("dispatch_rule_callee"), rule
    assert (rule.rule.dispatch_rule_callee.room_prefix, rule.rule.dispatch_rule_callee.randomize) == ("call-", True)
    again = json.loads(run_setup(server, "--number", NUMBER, "--json").stdout)
    assert (again["rule_id"], again["rule_created"], again["rule_updated"]) == (old_id, False, False)


def test_a_server_without_redis_a_wrong_secret_or_no_server_is_one_line_and_exit_2(
    server: SipApiServer, bare_server: SipApiServer
) -> None:
    done = run_setup(bare_server, "--number", NUMBER)
    assert done.returncode == 2
    assert "sip not connected" in one_line(done)
    done = run_setup(server, "--number", NUMBER, secret="not-the-secret-" * 3)
    assert done.returncode == 2
    assert "refused" in one_line(done)
    done = run_setup(None, "--number", NUMBER, url="ws://127.0.0.1:1")
    assert done.returncode == 2
    assert "cannot reach LiveKit" in one_line(done)
    done = run_setup(None, "--number", NUMBER, url="")
    assert done.returncode == 2
    assert "LIVEKIT_URL is not set" in one_line(done)
