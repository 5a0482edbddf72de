"""Graph overhead per text turn: the demo scenarios run through AgentSession.run, timed per turn.

Usage: .venv/bin/python bench/graph_turns.py [--rounds 5] [--concurrency 1,10] [--json]

Reports, per concurrency level, P50/P95/P99 of
  graph_ms    the LangGraph turn itself (supervise, route, specialist, tools on SQLite, review, speak),
  session_ms  what AgentSession.run adds around it (the turn's wall time minus the graph),
  router_ms   the local classifier alone (measured separately on the same utterances).
Everything runs in one process on the embedded default, so the numbers compare designs, not machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import load_settings  # noqa: E402
from orchestrator.runtime import Services  # noqa: E402
from orchestrator.scenarios import SCENARIOS  # noqa: E402
from orchestrator.session.text import run_text_call  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[k], 2)


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99), "n": len(values)}


async def run_level(services: Services, rounds: int, concurrency: int) -> dict[str, Any]:
    graph_ms: list[float] = []
    session_ms: list[float] = []
    jobs = [s for _ in range(rounds) for s in SCENARIOS]
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        scenario = jobs[index]
        async with gate:
            result = await run_text_call(
                services, scenario.turns, caller_id=scenario.caller_id, call_id=f"bench-{concurrency}-{index}"
            )
        for turn in result.turns:
            graph_ms.append(turn.graph_ms)
            session_ms.append(max(0.0, turn.latency_ms - turn.graph_ms))

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(len(jobs))))
    wall = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "calls": len(jobs),
        "turns": len(graph_ms),
        "turns_per_s": round(len(graph_ms) / wall, 1),
        "graph_ms": summary(graph_ms),
        "session_ms": summary(session_ms),
    }


async def main(rounds: int, levels: list[int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as data_dir:
        async with await Services.open(load_settings(data_dir=Path(data_dir))) as services:
            utterances = [u for s in SCENARIOS for u in s.turns]
            services.classifier.classify("warm up")
            router_ms = []
            for _ in range(20):
                for u in utterances:
                    t0 = time.perf_counter()
                    services.classifier.classify(u)
                    router_ms.append((time.perf_counter() - t0) * 1000)
            await run_level(services, 1, 1)  # warm caches and the SQLite file
            runs = [await run_level(services, rounds, level) for level in levels]
    return {
        "router_ms": summary(router_ms),
        "runs": runs,
        "median_graph_p50": statistics.median(r["graph_ms"]["p50"] for r in runs),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="times each demo scenario runs per level")
    parser.add_argument("--concurrency", default="1,10", help="comma-separated concurrent calls")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    report = asyncio.run(main(args.rounds, [int(x) for x in args.concurrency.split(",")]))
    print(json.dumps(report, indent=None if args.json else 2))
