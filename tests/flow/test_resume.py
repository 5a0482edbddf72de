"""A call's checkpoint is resumed in a fresh process with every turn kept."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.runtime import Services
from orchestrator.session.text import TextCall

pytestmark = pytest.mark.flow

JAMES = "+15550100002"

SCRIPT = r"""
import asyncio, json, sys
from datetime import UTC, datetime
from orchestrator.config import load_settings
from orchestrator.runtime import Services
from orchestrator.session.text import TextCall

async def main(data_dir, call_id, turns):
    clock = lambda: datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
    async with await Services.open(load_settings(data_dir=data_dir), clock=clock) as services:
        call = TextCall(services, call_id=call_id, caller_id="+15550100002")
        try:
            for text in turns:
                await call.say(text)
            state = await call.state()
        finally:
            await call.aclose()
    print(json.dumps({"transcript": state["transcript"], "turn": state["turn"], "active": state["active"]}))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
"""


def run_process(data_dir: Path, call_id: str, *turns: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data_dir), call_id, *turns],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_resume_in_another_process(tmp_path: Path) -> None:
    first = run_process(tmp_path, "call-resume-1", "How much do I owe?", "10453")
    assert first["turn"] == 2
    second = run_process(tmp_path, "call-resume-1", "yes", "yes")
    transcript = second["transcript"]
    assert isinstance(transcript, list)
    callers = [t["text"] for t in transcript if t["role"] == "caller"]
    assert callers == ["How much do I owe?", "10453", "yes", "yes"]
    assert second["turn"] == 4
    assert second["active"] == "billing"
    # The resumed process knew the caller was verified and mid-payment: it took the payment.
    assert "payment" in transcript[-1]["text"].lower()


async def test_a_turn_cut_off_mid_graph_is_taken_again_in_full_on_resume(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second turn is cut while the billing specialist waits for the tenant (a drain deadline or a crash
    # would cut it the same way); the cancelled run still leaves a checkpoint with nodes to run.
    entered, never = asyncio.Event(), asyncio.Event()
    balance = services.tenant.billing.balance

    async def stalled_balance(account_id: str) -> Any:
        entered.set()
        await never.wait()
        return await balance(account_id)

    call = TextCall(services, call_id="cut-turn", caller_id=JAMES)
    await call.say("How much do I owe?")
    monkeypatch.setattr(services.tenant.billing, "balance", stalled_balance)
    turn = asyncio.create_task(call.say("10453"))
    await entered.wait()
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    await call.aclose()
    snapshot = await services.graph.aget_state({"configurable": {"thread_id": "cut-turn"}})
    assert snapshot.next  # the cut run's own checkpoint, waiting on a node

    monkeypatch.setattr(services.tenant.billing, "balance", balance)
    resumed = TextCall(services, call_id="cut-turn", caller_id=JAMES)
    try:
        await resumed.start()
        state = await resumed.state()
        assert state["turn"] == 1  # the end of the last whole turn
        record = await resumed.say("10453")
        assert "balance" in record.agent.lower()
        state = await resumed.state()
    finally:
        await resumed.aclose()
    callers = [t["text"] for t in state["transcript"] if t["role"] == "caller"]
    assert callers == ["How much do I owe?", "10453"]
    assert state["turn"] == 2
