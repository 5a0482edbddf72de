"""A real worker process for the flow tests: `run_worker` with every step printed as a JSON line on stdout.

Usage: worker_proc.py <prefix> <slots> [drain_timeout_s]; Redis, data_dir and timers come from the env.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from orchestrator.config import load_settings
from orchestrator.contracts import CallOutcome
from orchestrator.worker.main import run_worker


def emit(kind: str, **fields: object) -> None:
    print(json.dumps({"event": kind, "t": time.time(), **fields}), flush=True)


async def main(prefix: str, slots: int, drain_timeout_s: float) -> None:
    async def outcome(o: CallOutcome) -> None:
        emit("outcome", call_id=o.call_id, turns=o.turns, resumed_at_turn=o.resumed_at_turn, attempt=o.attempt)

    worker = await run_worker(
        load_settings(),
        slots=slots,
        prefix=prefix,
        drain_timeout_s=drain_timeout_s,
        hold_interval_s=None,
        on_ready=lambda name, n: emit("ready", name=name, slots=n),
        on_start=lambda call_id, done: emit("start", call_id=call_id, resumed_at=done),
        on_turn=lambda call_id, done: emit("turn", call_id=call_id, done=done),
        on_outcome=outcome,
    )
    emit("exit", completed=worker.completed)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 30.0))
