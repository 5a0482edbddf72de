"""A real worker process for the flow tests: `run_worker` with every step printed as a JSON line on stdout.

Usage: worker_proc.py <prefix> <slots> [drain_timeout_s]; Redis, data_dir and timers come from the env.
``CRASH_AT`` makes the process SIGKILL itself at one point of a paying turn (see `install_crash_point`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction

from orchestrator.config import load_settings
from orchestrator.contracts import CallOutcome
from orchestrator.domain.billing import SqlBilling
from orchestrator.domain.models import PaymentRow
from orchestrator.worker.main import run_worker


def emit(kind: str, **fields: object) -> None:
    print(json.dumps({"event": kind, "t": time.time(), **fields}), flush=True)


def die(point: str) -> None:
    emit("crash", point=point)
    os.kill(os.getpid(), signal.SIGKILL)


def install_crash_point(point: str) -> Callable[[str, int], None]:
    """Die at `point` of a paying turn; returns the turn hook that dies at ``turn:<n>`` (after turn n's checkpoint).

    Points: ``payment:before`` (the caller's "yes" is in, nothing charged yet), ``payment:flushed`` (the
    payment row is written but its transaction not committed), ``payment:committed`` (the tenant has the
    payment, the turn's checkpoint does not), ``turn:<n>`` (turn n and its checkpoint are saved).
    """
    pay = SqlBilling.pay
    if point in ("payment:before", "payment:committed"):

        async def crashing_pay(self: SqlBilling, *args: Any, **kwargs: Any) -> Any:
            if point == "payment:before":
                die(point)
            result = await pay(self, *args, **kwargs)
            die(point)
            return result

        SqlBilling.pay = crashing_pay  # type: ignore[method-assign]  # the failpoint replaces the method
    elif point == "payment:flushed":

        @event.listens_for(Session, "after_flush")
        def _flushed(session: Session, _context: UOWTransaction) -> None:
            if any(isinstance(row, PaymentRow) for row in session.new):
                die(point)

    def on_turn(call_id: str, done: int) -> None:
        emit("turn", call_id=call_id, done=done)
        if point == f"turn:{done}":
            die(point)

    return on_turn


async def main(prefix: str, slots: int, drain_timeout_s: float) -> None:
    async def outcome(o: CallOutcome) -> None:
        emit("outcome", call_id=o.call_id, turns=o.turns, resumed_at_turn=o.resumed_at_turn, attempt=o.attempt)

    on_turn = install_crash_point(os.environ.get("CRASH_AT", ""))

    worker = await run_worker(
        load_settings(),
        slots=slots,
        prefix=prefix,
        drain_timeout_s=drain_timeout_s,
        hold_interval_s=None,
        on_ready=lambda name, n: emit("ready", name=name, slots=n),
        on_start=lambda call_id, done: emit("start", call_id=call_id, resumed_at=done),
        on_turn=on_turn,
        on_outcome=outcome,
    )
    emit("exit", completed=worker.completed)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 30.0))
