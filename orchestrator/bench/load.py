"""The load simulator behind `switchboard simulate`: scripted callers through the signed webhook at a set rate,
and what the queue made of each call (outcomes, dead letters, hold messages)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.exceptions import ConnectionError as RedisConnectionError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.api.signing import livekit_webhook_token
from orchestrator.config import Settings
from orchestrator.queue import CallQueue, open_queue
from orchestrator.queue.hold import read_hold_messages
from orchestrator.queue.outcomes import read_outcomes
from orchestrator.scenarios import SCENARIOS, simulated_caller
from orchestrator.stats import percentile

__all__ = ["QueueViews", "SimulatedRun", "simulate_calls", "summarize"]


@dataclass
class QueueViews:
    """What the simulator reads of the queue: straight from Redis when it started the system, else over the API.

    The API's queue views need a console user; a running API is read with an admin's API token.
    """

    http: httpx.AsyncClient
    queue: CallQueue | None = None  # on the system's Redis, when the simulator started it

    async def stats(self) -> dict[str, Any]:
        if self.queue is not None:
            stats: dict[str, Any] = (await self.queue.stats()).model_dump(mode="json")
            return stats
        found: dict[str, Any] = self._json(await self.http.get("/v1/queue"))
        return found

    async def outcomes(self, after: str) -> tuple[list[dict[str, Any]], str]:
        if self.queue is not None:
            found, last = await read_outcomes(self.queue.redis, self.queue.keys.prefix, after=after, block_ms=1000)
            return [o.model_dump(mode="json") for o in found], last
        body = self._json(await self.http.get("/v1/outcomes", params={"after": after, "wait_ms": 1000}))
        return body["outcomes"], body["last_id"]

    async def dead_letters(self) -> list[dict[str, Any]]:
        if self.queue is not None:
            return [d.model_dump(mode="json") for d in await self.queue.dead_letters(1000)]
        found: list[dict[str, Any]] = self._json(await self.http.get("/v1/dead-letters", params={"limit": 1000}))
        return found

    async def hold_messages(self, call_id: str) -> int:
        if self.queue is not None:
            return len(await read_hold_messages(self.queue.redis, self.queue.keys.prefix, call_id))
        return len(self._json(await self.http.get(f"/v1/calls/{call_id}/hold-messages"))["messages"])

    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        if resp.status_code in {401, 403}:
            raise RuntimeError(f"the API refused the queue views ({resp.json()['error']['message']}); pass --token")
        resp.raise_for_status()
        return resp.json()


@dataclass
class SimulatedRun:
    """What one simulation placed, and what became of each call."""

    calls: int
    placed: dict[str, str] = field(default_factory=dict)  # call_id -> scenario name
    refused: int = 0
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    hold_messages: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


def _pct(values: list[float], q: float) -> float:
    return round(percentile(values, q * 100), 2)


def summarize(run: SimulatedRun) -> dict[str, Any]:
    """The simulate summary: success = completed with the scenario's expected outcome."""
    expected = {s.name: s.expect_outcome for s in SCENARIOS}
    completed = {c: o for c, o in run.outcomes.items() if o["status"] == "completed"}
    dead = run.dead | {c for c, o in run.outcomes.items() if o["status"] == "dead_lettered"}
    ok = sum(1 for c, o in completed.items() if o["outcome"] == expected.get(run.placed.get(c, ""), "?"))
    waits = [float(o["queue_wait_ms"]) for o in completed.values()]
    turns = [float(t) for o in completed.values() for t in o["turn_latency_ms"]]
    routes: dict[str, int] = {}
    for o in completed.values():
        first = o["routes"][0] if o["routes"] else "none"
        routes[first] = routes.get(first, 0) + 1
    escalated = sum(1 for o in completed.values() if o["outcome"] == "escalated")
    return {
        "calls": run.calls,
        "completed": len(completed),
        "lost": len(set(run.placed) - set(completed) - dead),
        "dead_lettered": len(dead),
        "success_rate": round(ok / run.calls, 4) if run.calls else 0.0,
        "queue_wait_ms": {"p50": _pct(waits, 0.5), "p95": _pct(waits, 0.95), "p99": _pct(waits, 0.99)},
        "turn_latency_ms": {"p50": _pct(turns, 0.5), "p95": _pct(turns, 0.95), "p99": _pct(turns, 0.99)},
        "escalation_rate": round(escalated / len(completed), 4) if completed else 0.0,
        "routes": dict(sorted(routes.items())),
    }


async def simulate_calls(
    api: str,
    settings: Settings,
    *,
    calls: int,
    rate: float,
    concurrency: int,
    turn_gap_ms: int,
    timeout_s: float,
    expect_slots: int,
    show: bool,
    console: Console,
    token: str | None = None,
    redis_url: str | None = None,
    prefix: str = "sb",
) -> SimulatedRun:
    run = SimulatedRun(calls=calls)
    tag = uuid.uuid4().hex[:8]
    key, secret = settings.livekit_api_key, settings.livekit_api_secret.get_secret_value()
    slots = asyncio.Semaphore(concurrency)
    in_flight: set[str] = set()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=api, timeout=30, headers=headers))
        views = QueueViews(http)
        if redis_url:
            views.queue = open_queue(settings, redis_url, prefix=prefix)
            stack.push_async_callback(views.queue.aclose)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError, RedisConnectionError):
                ready = await http.get("/readyz")
                stats = await views.stats() if ready.status_code == 200 else {}
                if stats.get("worker_slots", 0) >= expect_slots:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API at {api} (and {expect_slots} worker slots) did not come up in 60 s")
            await asyncio.sleep(0.2)

        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=console, disable=not show, transient=False,
        )  # fmt: skip
        with progress:
            placed_bar = progress.add_task("placed", total=calls, info="")
            done_bar = progress.add_task("finished", total=calls, info="")

            async def read_outcomes() -> None:
                cursor = "0-0"
                # A short call's outcome can be read before the webhook's 202 (and so the call's id) reaches
                # the placer: outcomes are kept until their call is known, never skipped.
                early: dict[str, dict[str, Any]] = {}
                while len(run.outcomes) < len(run.placed) or len(run.placed) + run.refused < calls:
                    with contextlib.suppress(httpx.HTTPError, RedisConnectionError):
                        found, cursor = await views.outcomes(cursor)
                        for o in found:
                            early.setdefault(o["call_id"], o)
                    for cid in [c for c in early if c in run.placed]:
                        if cid not in run.outcomes:
                            run.outcomes[cid] = early[cid]
                            if cid in in_flight:
                                in_flight.discard(cid)
                                slots.release()
                        del early[cid]
                    progress.update(done_bar, completed=len(run.outcomes), info=f"in flight {len(in_flight)}")

            async def place(i: int) -> None:
                scenario = simulated_caller(i)
                name = f"call-sim-{tag}-{i}"
                meta = {
                    "caller_id": scenario.caller_id or "",
                    "priority": 1,
                    "simulated": True,
                    "script": list(scenario.turns),
                    "scenario": scenario.name,
                    "turn_gap_ms": turn_gap_ms,
                }
                event = {"event": "room_started", "id": f"EV_{tag}_{i}", "room": {"sid": f"RM_{tag}_{i}", "name": name}}
                event["room"]["metadata"] = json.dumps(meta)  # type: ignore[index]
                body = json.dumps(event).encode()
                for _ in range(20):
                    headers = {"Authorization": livekit_webhook_token(key, secret, body)}
                    try:
                        resp = await http.post("/webhooks/livekit", content=body, headers=headers)
                    except httpx.HTTPError:
                        await asyncio.sleep(0.5)
                        continue
                    if resp.status_code == 202:
                        cid = resp.json()["call_id"]
                        run.placed[cid] = scenario.name
                        in_flight.add(cid)
                        return
                    if resp.status_code == 503:
                        await asyncio.sleep(min(5.0, float(resp.headers.get("Retry-After", "1"))))
                        continue
                    raise RuntimeError(f"webhook refused: {resp.status_code} {resp.text}")
                run.refused += 1
                slots.release()

            reader = asyncio.create_task(read_outcomes(), name="simulate-outcomes")
            placers: list[asyncio.Task[None]] = []
            try:
                for i in range(calls):
                    await slots.acquire()
                    placers.append(asyncio.create_task(place(i), name=f"simulate-place-{i}"))
                    progress.update(placed_bar, completed=i + 1)
                    await asyncio.sleep(1 / rate if rate > 0 else 0)
                await asyncio.gather(*placers)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), timeout_s)
            finally:
                reader.cancel()
                for t in placers:
                    t.cancel()
                await asyncio.gather(reader, *placers, return_exceptions=True)

        with contextlib.suppress(httpx.HTTPError, RedisConnectionError):
            dead = await views.dead_letters()
            run.dead = {d["job"]["call_id"] for d in dead if d["job"]["call_id"] in run.placed}
            for cid in run.placed:
                run.hold_messages += await views.hold_messages(cid)
    return run
