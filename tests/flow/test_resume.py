"""A call's checkpoint is resumed in a fresh process with every turn kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.flow

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
