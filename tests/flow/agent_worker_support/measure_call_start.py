"""Measures a voice call's start in the agent worker's pool: job entrypoint to the session started.

Runs the pool offline (no LiveKit server) with ``N`` simulated jobs one after another, each given a
warm idle process, and prints the per-job figures as JSON. It wraps the pool's prewarm and entrypoint
without changing them, so it measures any version of `orchestrator.worker.agent_worker` on
``PYTHONPATH`` (e.g. an exported older tree, to compare before and after).

Usage: PYTHONPATH=<tree> python -m tests.flow.agent_worker_support.measure_call_start [N]
(run from the tree's root, with REDIS_URL and SWITCHBOARD_DATA_DIR set; the forkserver re-imports
`__main__`, hence the guard.)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from livekit.agents import AgentSession, JobContext, JobProcess

_OUT = "MEASURE_CALL_START_DIR"
_started: dict[str, float] = {}


def timed_prewarm(proc: JobProcess) -> None:
    """The worker's own prewarm, timed; then AgentSession.start is wrapped to note when a session is up."""
    from orchestrator.worker import agent_worker as livekit_worker

    t0 = time.perf_counter()
    livekit_worker._prewarm(proc)
    proc.userdata["measure.prewarm_ms"] = (time.perf_counter() - t0) * 1000
    original = AgentSession.start

    async def start(self: AgentSession[Any], *args: Any, **kwargs: Any) -> Any:
        result = await original(self, *args, **kwargs)
        for room, t_job in list(_started.items()):
            figures = {"call_start_ms": (time.perf_counter() - t_job) * 1000, "prewarm_ms": _prewarm_ms(proc)}
            _record(room, {**figures, **proc.userdata.get("measure.parts", {})})
            _started.pop(room)
        return result

    AgentSession.start = start  # type: ignore[method-assign]  # measurement only, in the job process
    _time_parts(proc)
    if os.environ.get("MEASURE_SKIP_REWARM"):
        _skip_rewarm()


def _skip_rewarm() -> None:
    """What-if: `WhisperSTT.load` skips its warm-up decode when the prewarm already did it in this process."""
    from orchestrator.providers import stt

    async def load(self: stt.WhisperSTT) -> None:
        await asyncio.to_thread(stt._load_model, self._model_path, self._threads)

    stt.WhisperSTT.load = load  # type: ignore[method-assign]  # measurement only


def _time_parts(proc: JobProcess) -> None:
    """Wrap the job's expensive steps (both versions have them) to split the call start."""
    import orchestrator.providers.voice as voice
    import orchestrator.runtime as runtime

    parts: dict[str, float] = proc.userdata.setdefault("measure.parts", {})

    def timed(name: str, fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                parts[name] = round((time.perf_counter() - t0) * 1000, 1)

        return wrapper

    voice.open_voice = timed("open_voice_ms", voice.open_voice)
    services_open = runtime.Services.open.__func__  # type: ignore[attr-defined]  # the classmethod's function

    async def open_services(cls: Any, *args: Any, **kwargs: Any) -> Any:
        return await timed("services_open_ms", services_open)(cls, *args, **kwargs)

    runtime.Services.open = classmethod(open_services)  # type: ignore[method-assign, assignment]  # measurement only


def _prewarm_ms(proc: JobProcess) -> float:
    return float(proc.userdata.get("measure.prewarm_ms", 0.0))


def _record(room: str, figures: dict[str, float]) -> None:
    (Path(os.environ[_OUT]) / f"{room}.json").write_text(json.dumps(figures))


async def timed_entrypoint(ctx: JobContext) -> None:
    from orchestrator.worker import agent_worker as livekit_worker

    _started[ctx.job.room.name] = time.perf_counter()
    await livekit_worker._entrypoint(ctx)


async def main(count: int) -> None:
    from orchestrator.config import get_settings
    from orchestrator.runtime import Services
    from orchestrator.worker.agent_worker import build_server

    out_dir = Path(tempfile.mkdtemp(prefix="call-start-"))
    os.environ[_OUT] = str(out_dir)
    os.environ["SWITCHBOARD_AGENT_SLOTS"] = str(count + 2)
    settings = get_settings()
    await (await Services.open(settings)).aclose()  # seed the tenant, as the queue worker would have
    server = build_server(settings)
    server.setup_fnc = timed_prewarm
    server._entrypoint_fnc = timed_entrypoint  # private: wraps the registered entrypoint for the measurement
    runner = asyncio.create_task(server.run(devmode=False, unregistered=True))
    samples: list[dict[str, float]] = []
    try:
        for i in range(count):
            # Give the pool time to have a warm idle process, as a worker between calls would.
            await asyncio.sleep(12 if i == 0 else 8)
            room = f"measure-{os.getpid()}-{i}"
            await server.simulate_job(room, fake_job=True)
            result = out_dir / f"{room}.json"
            for _ in range(600):
                if result.exists():
                    samples.append(json.loads(result.read_text()))
                    break
                await asyncio.sleep(0.05)
    finally:
        await server.aclose()
        runner.cancel()
    starts = [s["call_start_ms"] for s in samples]
    print(
        json.dumps(
            {
                "samples": samples,
                "call_start_ms_median": round(statistics.median(starts), 1) if starts else None,
                "call_start_ms_max": round(max(starts), 1) if starts else None,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
