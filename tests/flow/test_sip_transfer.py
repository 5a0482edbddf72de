"""Warm transfer to a human desk over SIP: an escalated phone caller is REFERred to a desk of ours, or stays with us.

The stack is test_sip_real's (livekit-server, livekit-sip, the API and both workers) with
SWITCHBOARD_TRANSFER_SIP_URI set to a PJSIP desk (`devstack.sip_desk`) listening in the caller's namespace.
Two calls: the desk refuses the first (486 Busy Here), and answers the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.devstack import sip_desk
from orchestrator.devstack.netns import NamespacesUnavailable, netns_pair, netns_supported
from orchestrator.devstack.sip import LIVEKIT_SIP, sip_setup, start_sip
from orchestrator.devstack.stack import LIVEKIT_SERVER, ROOT, RealStack, real_stack
from tests.flow.test_real_livekit import CALL_CAP_S, RECORD_CAP_S, _poll
from tests.flow.test_sip_real import phone, say_at_8k, transcribe_8k

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: run deploy/dev/tools.sh (make tools)"),
    pytest.mark.skipif(not LIVEKIT_SIP.exists(), reason="no livekit-sip: run deploy/dev/tools.sh livekit-sip"),
    pytest.mark.skipif(netns_supported() is not None, reason=str(netns_supported())),
    pytest.mark.skipif(shutil.which("flite") is None, reason="no flite: apt-get install -y flite"),
    pytest.mark.timeout(900),
]

DESK_PORT = 5070
ASK = "I want to speak to a real person."
TO_THE_DESK = "My internet has been down since this morning."
AGAIN = "Is anyone there?"


def call_with_desk(stack: RealStack, out: Path, *, answer: bool) -> dict[str, Any]:
    """One phone call that asks for a person, with the desk up (answering or busy); what each side saw."""
    desk_out = out.parent / f"{out.name}-desk"
    cfg = {"bind": stack.pair.caller_ip, "port": DESK_PORT, "answer": answer, "cap_s": CALL_CAP_S, "out": str(desk_out)}
    argv = stack.pair.command(stack.pair.caller_ns, [sys.executable, sip_desk.__file__, json.dumps(cfg)])
    with (out.parent / f"{out.name}-desk.log").open("wb") as err:
        desk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=stack.env(), cwd=ROOT, text=True)
    try:
        assert desk.stdout is not None
        # pjlib prints a line or two of its own before the desk has set its logging up.
        for line in desk.stdout:
            if line.strip() == "ready":
                break
        else:
            raise AssertionError(f"the desk exited before it listened: see {err.name}")
        transfer = {
            "wav": str(say_at_8k(TO_THE_DESK, out.parent / f"{out.name}-to-desk.wav")),
            "again_wav": str(say_at_8k(AGAIN, out.parent / f"{out.name}-again.wav")),
        }
        result = phone(
            stack,
            out,
            codecs=["PCMU/8000"],
            question=ASK,
            extra={"keys": "", "transfer": transfer, "log": str(out.parent / f"{out.name}-sip.log")},
        )
        stdout, _ = desk.communicate(timeout=CALL_CAP_S)
    finally:
        if desk.poll() is None:
            desk.kill()
            desk.wait()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"the desk printed no result (exit {desk.returncode}): {stdout[-2000:]}"
    return {"phone": result, "desk": json.loads(lines[-1])}


async def recorded(stack: RealStack, count: int) -> dict[str, dict[str, Any]]:
    """Each call's record, checkpoint and ticket by call id, once ``count`` calls are recorded."""
    from orchestrator.config import load_settings
    from orchestrator.runtime import Services
    from orchestrator.store.records import CallStore
    from orchestrator.worker.runner import checkpoint_state

    async with await Services.open(load_settings(data_dir=stack.data_dir), seed=False) as services:
        store = CallStore(services.engine)

        async def all_recorded() -> Any:
            calls = await store.list_calls()
            views = [await store.get_call(c.call_id) for c in calls]
            return views if len(calls) >= count and all(v is not None for v in views) else None

        views = await _poll(all_recorded, RECORD_CAP_S)
        assert views, f"not {count} call records within {RECORD_CAP_S} s\n{stack.logs()}"
        statuses = ("waiting", "accepted", "closed", "callback", "abandoned")
        tickets = {t.call_id: t for t in await services.tenant.desk.with_status(*statuses)}  # type: ignore[attr-defined]  # the SQL desk's
        return {
            v.call_id: {
                "record": v.to_json(),
                "checkpoint": await checkpoint_state(services, v.call_id),
                "ticket": tickets.get(v.call_id),
            }
            for v in views
        }


@pytest.fixture(scope="module")
def transfers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A call the busy desk refuses, then one it answers (minutes on a busy machine)."""
    run_dir = tmp_path_factory.mktemp("sip-transfer")
    with contextlib.ExitStack() as cleanup:
        try:
            pair = cleanup.enter_context(netns_pair())
        except NamespacesUnavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        desk_uri = f"sip:desk@{pair.caller_ip}:{DESK_PORT}"
        env = {"SWITCHBOARD_TRANSFER_SIP_URI": desk_uri}
        stack = cleanup.enter_context(real_stack(pair, run_dir, env=env))
        start_sip(stack)
        sip_setup(stack)
        stack.start_queue_worker()
        result: dict[str, Any] = {"desk_uri": desk_uri}
        result["busy"] = call_with_desk(stack, run_dir / "busy", answer=False)
        (busy_id,) = asyncio.run(recorded(stack, 1))
        result["taken"] = call_with_desk(stack, run_dir / "taken", answer=True)
        calls = asyncio.run(recorded(stack, 2))
        result["busy"].update(calls.pop(busy_id))
        (result["taken"]["call"],) = calls.values()
        result["logs"] = stack.logs()
        yield result


def _at(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def test_an_escalated_phone_caller_is_transferred_to_the_desk_which_hears_them(transfers: dict[str, Any]) -> None:
    taken, logs = transfers["taken"], transfers["logs"]
    said, desk, call = taken["phone"], taken["desk"], taken["call"]
    assert said["answered"], f"{said}\n{logs}"
    assert said.get("reply_wav"), f"no speech before the REFER: {said}\n{logs}"
    # The phone got the REFER for the desk's URI, called it, and the desk answered.
    assert transfers["desk_uri"] in (said["transfer_to"] or ""), f"{said}\n{logs}"
    assert said["transfer"]["answered"], f"{said}\n{desk}\n{logs}"
    assert (desk["invites"], desk["ended"]) == (1, True), desk
    # The ticket, with the AI's summary, was written before the desk's line rang.
    ticket = call["ticket"]
    assert ticket is not None, call
    assert ticket.summary.startswith("Reason: the caller asked for a person"), ticket.summary
    assert _at(ticket.created_at) < desk["invite_at"], (ticket.created_at, desk["invite_at"])
    # It is the desk's now: the console will not offer it, nor ring the caller back.
    assert (ticket.status, ticket.reason) == ("accepted", "requested_human"), ticket
    assert call["record"]["outcome"] == "transferred", call["record"]
    assert call["checkpoint"]["outcome"] == "transferred"
    # The caller heard they were being transferred before it happened.
    assert "transfer" in transcribe_8k(said["reply_wav"]).lower(), said
    # The desk hears the caller, over G.711 from the phone's own new call.
    heard = transcribe_8k(desk["heard_wav"]).lower()
    print(f"\ndesk heard: {heard!r}")
    assert "internet" in heard, heard


def test_a_busy_desk_leaves_the_caller_with_the_ai_and_the_ticket_for_the_console(transfers: dict[str, Any]) -> None:
    busy, logs = transfers["busy"], transfers["logs"]
    said, desk = busy["phone"], busy["desk"]
    assert said["transfer_to"] is not None, f"{said}\n{logs}"
    # The desk refused the transferred call: Busy Here.
    assert (said["transfer"]["answered"], said["transfer"]["status"]) == (False, 486), said
    assert (desk["invites"], desk["answered_at"]) == (1, None), desk
    # The caller stays on the first call and hears the AI say the desk was not reached.
    assert said["back_s"] is not None, f"{said}\n{logs}"
    back = transcribe_8k(said["back_wav"]).lower()
    print(f"\nafter the refusal the caller heard: {back!r}")
    assert any(word in back for word in ("through", "team", "call you back")), back
    # And the call goes on: the caller's next words are answered.
    assert said["again_s"] is not None, f"{said}\n{logs}"
    assert transcribe_8k(said["again_wav"]).strip()
    agents = [t["text"] for t in busy["checkpoint"]["transcript"] if t["role"] == "agent"]
    assert any(t.startswith("I'm sorry, I couldn't get through") for t in agents), agents
    assert busy["record"]["outcome"] == "escalated", busy["record"]
    # The ticket stayed the console's, never the desk's: once the caller hung up, the console settled it (a
    # callback, or abandoned when the call's live entry has no number to ring back).
    assert busy["ticket"] is not None
    assert busy["ticket"].status in ("waiting", "callback", "abandoned"), busy["ticket"]
