"""Measure what calls cost an agent worker: its real process pool runs N simulated callers at once, with no LiveKit.

Each job is dispatched as a queue worker dispatches it (a script: the caller speaks on a local line, the call runs
to its end in a job process of its own). Prints JSON: CPU seconds and memory (RSS; PSS, which counts a shared page once
across the pool, as its cgroup does; USS, the pages no other process maps) idle and at the calls' peak. Needs REDIS_URL.
Usage: python deploy/dev/measure_agent.py [--calls 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import psutil

SCRIPT = ["What's my balance?", "10027", "Can I pay it now?", "Thanks, that's all."]
MIB = 1024 * 1024


def _tree() -> list[psutil.Process]:
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


class Sampler:
    """CPU seconds (last seen per process, so exited job processes keep theirs) and memory peaks of the tree."""

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0
        self.peak_uss = 0
        self.peak_pss = 0

    def sample(self, *, full: bool) -> None:
        rss = uss = pss = 0
        for p in _tree():
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    self.cpu[p.pid] = t.user + t.system
                    if full:
                        info = p.memory_full_info()
                        rss += info.rss
                        uss += info.uss
                        pss += info.pss
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_uss = max(self.peak_uss, uss)
        self.peak_pss = max(self.peak_pss, pss)

    def cpu_s(self) -> float:
        return sum(self.cpu.values())


async def main(calls: int) -> dict[str, Any]:
    import redis.asyncio as aioredis
    from livekit.agents import AgentServer, utils
    from livekit.agents.job import JobAcceptArguments, RunningJobInfo
    from livekit.protocol import agent, models

    from orchestrator.config import get_settings
    from orchestrator.contracts import CallJob
    from orchestrator.queue import ClaimedCall
    from orchestrator.runtime import Services
    from orchestrator.worker.agent_worker import build_server
    from orchestrator.worker.dispatch import dispatch_metadata, session_ended_key

    settings = get_settings().model_copy(update={"agent_slots": calls})
    await (await Services.open(settings)).aclose()  # the tenant is seeded by the queue worker, not the jobs
    server: AgentServer = build_server(settings)
    runner = asyncio.create_task(server.run(devmode=False, unregistered=True))
    sampler = Sampler()
    redis = aioredis.Redis.from_url(settings.redis_url or "")
    prefix = f"measure-{os.getpid()}"
    out: dict[str, Any] = {"calls": calls, "turns": len(SCRIPT), "slots": calls}
    try:
        # Idle: the main process and its prewarmed job processes, models loaded.
        for _ in range(1200):
            pool = getattr(server, "_proc_pool", None)  # private: made by run(); its prewarmed processes
            if (
                pool is not None
                and len(pool.processes) >= min(calls, 2)
                and all(p._initialize_fut.done() for p in pool.processes)
            ):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        sampler.sample(full=True)
        out["idle"] = {k: round(getattr(sampler, f"peak_{k}") / MIB) for k in ("rss", "pss", "uss")}
        sampler.peak_rss = sampler.peak_uss = sampler.peak_pss = 0
        cpu0 = sampler.cpu_s()
        t0 = time.monotonic()
        ids = [f"call-measure-{os.getpid()}-{i}" for i in range(calls)]
        for call_id in ids:
            claimed = ClaimedCall(
                job=CallJob(call_id=call_id, source="simulate", room=call_id, caller_id="+15550100001", script=SCRIPT),
                entry_id="1-0",
                priority=1,
                deliveries=1,
                waited_s=0.0,
                consumer="measure",
                claimed_at=time.monotonic(),
            )
            job = agent.Job(
                id=utils.shortuuid("mock-job-"),
                room=models.Room(sid=utils.shortuuid("SRM_"), name=call_id),
                type=agent.JobType.JT_ROOM,
                metadata=json.dumps(dispatch_metadata(claimed, prefix=prefix)),
            )
            accept = JobAcceptArguments(identity=utils.shortuuid("fake-agent-"), name="", metadata="")
            info = RunningJobInfo(
                worker_id=server._id, accept_arguments=accept, job=job, url="", token="", fake_job=True
            )
            await server._proc_pool.launch_job(info)  # private: what simulate_job does, with the metadata
        ended: dict[str, float] = {}
        ticks = 0
        while len(ended) < calls and time.monotonic() - t0 < 600:
            ticks += 1
            sampler.sample(full=ticks % 5 == 0)
            for call_id in ids:
                if call_id not in ended and await redis.lpop(session_ended_key(prefix, call_id)):
                    ended[call_id] = time.monotonic() - t0
            await asyncio.sleep(0.2)
        sampler.sample(full=True)
        busy_s = sum(ended.values())
        cpu = sampler.cpu_s() - cpu0
        out["during"] = {
            "ended": len(ended),
            "wall_s": round(time.monotonic() - t0, 1),
            "call_s": sorted(round(v, 1) for v in ended.values()),
            "cpu_s": round(cpu, 2),
            "cpu_s_per_call": round(cpu / max(1, len(ended)), 2),
            "cores_per_call_in_progress": round(cpu / busy_s, 3) if busy_s else None,
            **{f"peak_{k}_mib": round(getattr(sampler, f"peak_{k}") / MIB) for k in ("rss", "pss", "uss")},
        }
        # PSS shares each page among the processes that map it: the pool's sum is what its cgroup is charged.
        out["per_call"] = {
            f"{k}_mib": round((getattr(sampler, f"peak_{k}") / MIB - out["idle"][k]) / calls)
            for k in ("rss", "pss", "uss")
        }
    finally:
        await redis.aclose()
        await server.aclose()
        runner.cancel()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=4, help="Simulated callers at once (the pool's slots).")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        sys.exit("set REDIS_URL (the end-of-call markers go through Redis)")
    print(json.dumps(asyncio.run(main(args.calls)), indent=2))
