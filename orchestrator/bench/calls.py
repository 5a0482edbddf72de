"""Calls through the real stack at rising concurrency: first audio at the caller, ours against an LLM-router baseline.

Real rooms, WebRTC callers and the vendor plugins production configures (Deepgram STT, OpenAI-compatible LLM,
Cartesia TTS), pointed at stand-ins in the server's namespace that answer at the standard profile. At each
level, ``n`` callers call our agent at once, then ``n`` call the baseline agent (`baseline_agent`: a router
LLM call, then the specialist's). First audio is measured at the caller: from the end of its speech to the
first frame of the agent's reply it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from orchestrator.bench.baseline_agent import AGENT_NAME, REGISTERED
from orchestrator.bench.providers.profile import Profile, ProfileCartesia, ProfileDeepgram, ProfileOpenAI
from orchestrator.devstack.calls import CALLER_SCRIPT, spoken
from orchestrator.devstack.netns import NetnsPair, netns_pair
from orchestrator.devstack.stack import RealStack, StackFailed, real_stack
from orchestrator.stats import percentiles

T = TypeVar("T")

# A demo customer asking for their balance and giving their ZIP, as every benchmark caller does.
CALLER_ID = "+15550100001"
TURNS = ["What's my balance?", spoken("10027")]
P95_GOAL_MS = 500.0
CALL_CAP_S = 600.0
REGISTER_CAP_S = 120.0
SAMPLE_S = 0.5
# The stack's processes that serve our calls; the baseline's calls are served by livekit-server and its agent.
OURS = ("livekit-server", "api", "agent-worker", "queue-worker")


class _Loop:
    """An event loop on a thread of its own, serving the stand-ins while the benchmark blocks elsewhere."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bench-standins", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@contextlib.contextmanager
def profile_providers(pair: NetnsPair, profile: Profile) -> Iterator[dict[str, str]]:
    """Deepgram, OpenAI and Cartesia stand-ins on 127.0.0.1 in the server's namespace; settings pointing at them."""
    host = _Loop()
    servers = [ProfileDeepgram(TURNS, profile), ProfileOpenAI(profile), ProfileCartesia(profile)]
    try:
        for server in servers:
            sock = pair.call_in(pair.server_ns, lambda: socket.create_server(("127.0.0.1", 0)))
            host.run(server.start(sock))
        deepgram, openai, cartesia = servers
        yield {
            "SWITCHBOARD_STT_PROVIDER": "deepgram",
            "DEEPGRAM_API_KEY": "bench",
            "DEEPGRAM_BASE_URL": f"{deepgram.base_url}/v1/listen",
            "SWITCHBOARD_TTS_PROVIDER": "cartesia",
            "CARTESIA_API_KEY": "bench",
            "CARTESIA_BASE_URL": cartesia.base_url,
            "OPENAI_API_KEY": "bench",
            "OPENAI_BASE_URL": openai.base_url,  # it ends in /v1
        }
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                host.run(server.aclose())
        host.close()


@dataclass
class _Usage:
    """CPU and memory of a set of process trees over a phase, sampled every ``SAMPLE_S``."""

    roots: list[int]
    cpu_start: dict[int, float] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)
    rss_start: float = 0.0
    rss_peak: float = 0.0

    def _tree(self) -> list[psutil.Process]:
        procs = []
        for pid in self.roots:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
        return procs

    def sample(self, *, first: bool = False) -> None:
        rss = 0.0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                cpu = proc.cpu_times()
                used = cpu.user + cpu.system
                if first:
                    self.cpu_start[proc.pid] = used
                # A process started during the phase counts from zero.
                self.cpu_start.setdefault(proc.pid, 0.0)
                self.cpu_last[proc.pid] = used
                rss += proc.memory_info().rss
        if first:
            self.rss_start = rss
        self.rss_peak = max(self.rss_peak, rss)

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu_last[pid] - self.cpu_start.get(pid, 0.0) for pid in self.cpu_last)


def _token(stack: RealStack, room: str, identity: str, *, baseline: bool) -> str:
    from livekit import api

    token = (
        api.AccessToken(stack.key, stack.secret)
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
    )
    if baseline:
        config = api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=AGENT_NAME)])
    else:
        config = api.RoomConfiguration(metadata=json.dumps({"caller_id": CALLER_ID}))
    return token.with_room_config(config).to_jwt()


async def _call(stack: RealStack, heard: Path, *, baseline: bool) -> dict[str, Any]:
    """One caller to its end: its report (turns with first audio) and how long the call took."""
    # Baseline rooms are not named like calls: the API admits nothing for them, their token dispatches the agent.
    room = f"{'base' if baseline else 'call'}-{secrets.token_hex(4)}"
    out_dir = heard / room
    out_dir.mkdir(parents=True)
    token = _token(stack, room, f"caller-{room}", baseline=baseline)
    argv = [sys.executable, str(CALLER_SCRIPT), stack.caller_url, token, str(out_dir), json.dumps(TURNS)]
    started = time.monotonic()
    try:
        lines, _ = await stack.run_caller(argv, out_dir / "caller.log", CALL_CAP_S)
    except TimeoutError:
        return {"error": f"the caller did not finish within {CALL_CAP_S:.0f} s", "seconds": CALL_CAP_S}
    try:
        found: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": "no report"}
    except json.JSONDecodeError:
        found = {"error": "no report"}
    found["seconds"] = time.monotonic() - started
    return found


async def _phase(stack: RealStack, n: int, heard: Path, *, baseline: bool) -> dict[str, Any]:
    """``n`` callers at once; their first audio, and the CPU and memory it took."""
    roots = [p.popen.pid for p in stack.procs if p.name in (("livekit-server", "baseline-agent") if baseline else OURS)]
    usage = _Usage(roots)
    usage.sample(first=True)
    children_before, own_before = _children_cpu(), _own_cpu()

    async def sample() -> None:
        while True:
            await asyncio.sleep(SAMPLE_S)
            await asyncio.to_thread(usage.sample)

    sampler = asyncio.create_task(sample())
    try:
        callers = await asyncio.gather(*(_call(stack, heard, baseline=baseline) for _ in range(n)))
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    usage.sample()
    callers_cpu = _children_cpu() - children_before
    server_cpu = usage.cpu_s
    own_cpu = _own_cpu() - own_before  # the stand-ins and this benchmark
    first_audio = [t["first_audio_ms"] for c in callers for t in c.get("turns", []) if t.get("first_audio_ms")]
    return {
        "first_audio": first_audio,
        "errors": [c["error"] for c in callers if c.get("error")],
        "cpu_ms_per_call_s": round(server_cpu * 1000 / max(1e-9, sum(c["seconds"] for c in callers)), 1),
        "rss_mb_per_call": round(max(0.0, usage.rss_peak - usage.rss_start) / 1e6 / n, 1),
        "callers_cpu_share": round(callers_cpu / max(1e-9, callers_cpu + server_cpu + own_cpu), 3),
    }


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _wait_registered(stack: RealStack, name: str) -> None:
    """Until the process ``name`` of the stack has logged that it registered with the server."""
    [proc] = [p for p in stack.procs if p.name == name]
    deadline = time.monotonic() + REGISTER_CAP_S
    while REGISTERED not in proc.log.read_text(errors="replace"):
        stack.check_alive()
        if time.monotonic() > deadline:
            raise StackFailed(f"{name} did not register within {REGISTER_CAP_S:.0f} s\n{stack.logs()}")
        time.sleep(0.2)


def run_call_bench(
    levels: list[int],
    *,
    server: Path,
    run_dir: Path,
    profile: Profile | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Start the stack with the profile's providers and the baseline agent; measure each level; stop everything."""
    profile = profile or Profile()
    said = on_progress or (lambda _line: None)
    out: dict[str, Any] = {
        "profile": {k: round(v * 1000, 1) for k, v in asdict(profile).items()},
        "turns_per_call": len(TURNS),
        "runs": [],
    }
    with contextlib.ExitStack() as cleanup:
        pair = cleanup.enter_context(netns_pair())
        providers = cleanup.enter_context(profile_providers(pair, profile))
        stack = cleanup.enter_context(
            real_stack(pair, run_dir / "stack", server=server, slots=max(levels), env=providers, on_progress=said)
        )
        said("starting the queue worker and the baseline agent")
        stack.start_queue_worker()
        stack.start("baseline-agent", [sys.executable, "-m", "orchestrator.bench.baseline_agent"])
        _wait_registered(stack, "baseline-agent")
        heard = run_dir / "heard"
        said("one call to each agent first, unmeasured (imports, job processes, caches)")
        asyncio.run(_phase(stack, 1, heard, baseline=False))
        asyncio.run(_phase(stack, 1, heard, baseline=True))
        for n in levels:
            said(f"{n} calls at once: ours, then the baseline")
            ours = asyncio.run(_phase(stack, n, heard, baseline=False))
            base = asyncio.run(_phase(stack, n, heard, baseline=True))
            o, b = percentiles(ours["first_audio"]), percentiles(base["first_audio"])
            out["runs"].append(
                {
                    "concurrency": n,
                    "ours": o,
                    "baseline": b,
                    "speedup_p50": round(b["p50"] / o["p50"], 2) if o["p50"] and b["p50"] else None,
                    "cpu_ms_per_call_s": ours["cpu_ms_per_call_s"],
                    "rss_mb_per_call": ours["rss_mb_per_call"],
                    "callers_cpu_share": ours["callers_cpu_share"],
                    "turns": {"ours": len(ours["first_audio"]), "baseline": len(base["first_audio"])},
                    "caller_errors": ours["errors"] + base["errors"],
                }
            )
    fits = [r["concurrency"] for r in out["runs"] if r["ours"]["p95"] is not None and r["ours"]["p95"] <= P95_GOAL_MS]
    out["capacity"] = max(fits, default=0)
    return out
