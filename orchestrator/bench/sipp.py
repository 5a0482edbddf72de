"""SIPp phone calls at once through the real livekit-sip into the real stack; SIPp's statistics and our queue's.

SIPp (`sipp_inbound.xml`) runs in the caller's namespace and calls livekit-sip in the server's; each call is
admitted by the server's webhook, queued, answered by an agent and completed when SIPp hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.devstack.netns import netns_pair
from orchestrator.devstack.sip import DIALLED, LIVEKIT_SIP, SIP_PORT, sip_setup, start_sip
from orchestrator.devstack.stack import LIVEKIT_SERVER, PREFIX, RealStack, real_stack
from orchestrator.devstack.stack import preflight as stack_preflight
from orchestrator.stats import percentiles

SCENARIO = Path(__file__).with_name("sipp_inbound.xml")
TRUNK_NUMBER = DIALLED
CALLER_NUMBER = "+15550100001"  # a demo customer
QUESTION = "What's my balance?"
# SIPp's own cap beyond the calls' length (answers wait in the queue on a busy machine); ours is above it.
SIPP_SLACK_S = 300.0
SETTLE_CAP_S = 300.0
SIPP_UDP_PORT = 5070


def sipp_binary() -> str | None:
    return shutil.which("sipp")


def preflight(server: Path = LIVEKIT_SERVER) -> str | None:
    """None when the SIP bench can run here, else one line: what is missing, what to do."""
    if sipp_binary() is None:
        return "sipp is not installed (it places the calls): apt-get install -y sip-tester"
    if not LIVEKIT_SIP.is_file():
        return f"no livekit-sip at {LIVEKIT_SIP}: run `deploy/dev/tools.sh livekit-sip` (make tools)"
    return stack_preflight(server)


def write_speech(to: Path, *, line_s: float, text: str = QUESTION) -> Path:
    """flite's speech for ``text``, then silence to ``line_s`` seconds: raw G.711 μ-law at 8 kHz for rtp_stream.

    A phone sends RTP the whole call, silence too; livekit-sip hangs up a call that sends none for a while
    (its media timeout), so the question is followed by μ-law silence for as long as the caller stays on.
    """
    from orchestrator.providers.tts import FliteTTS
    from orchestrator.session.line import mulaw_encode

    tts = FliteTTS()
    pcm = np.frombuffer(tts.render(text), dtype=np.int16).astype(np.float32)
    n = int(len(pcm) * 8000 / tts.sample_rate)
    at_8k = np.interp(np.linspace(0, len(pcm) - 1, n), np.arange(len(pcm)), pcm).astype(np.int16)
    silence = np.zeros(max(0, int(line_s * 8000) - n), dtype=np.int16)
    to.write_bytes(mulaw_encode(np.concatenate([at_8k, silence])).tobytes())
    return to


def sipp_folder(run_dir: Path) -> Path:
    """SIPp's working folder in ``run_dir``, empty: SIPp names its traces by its pid, so a kept folder's earlier
    traces would otherwise be read as this run's."""
    sipp_dir = run_dir / "sipp"
    shutil.rmtree(sipp_dir, ignore_errors=True)
    sipp_dir.mkdir(parents=True)
    return sipp_dir


def sipp_argv(stack: RealStack, *, calls: int, rate: float, hold_s: float, sip_port: int) -> list[str]:
    """SIPp's command line: ``calls`` calls, ``rate`` a second, at most all at once, each ``hold_s`` on the line."""
    binary = sipp_binary() or "sipp"
    return [
        binary, f"{stack.pair.server_ip}:{sip_port}",
        "-sf", "sipp_inbound.xml", "-s", TRUNK_NUMBER.removeprefix("+"), "-key", "caller", CALLER_NUMBER,
        "-i", stack.pair.caller_ip, "-mi", stack.pair.caller_ip, "-p", str(SIPP_UDP_PORT),
        "-m", str(calls), "-l", str(calls), "-r", f"{rate:g}", "-rp", "1000", "-d", str(int(hold_s * 1000)),
        "-trace_stat", "-stf", "stats.csv", "-fd", "1",
        "-trace_rtt", "-rtt_freq", "1",
        "-trace_err", "-error_file", "errors.log",
        "-trace_screen", "-screen_file", "screen.log",
        "-timeout", f"{int(calls / rate + hold_s + SIPP_SLACK_S)}s", "-timeout_error",
        "-nostdin",
    ]  # fmt: skip


def read_stats(run_dir: Path) -> dict[str, int]:
    """SIPp's cumulative counters from the last row of its -trace_stat CSV."""
    path = run_dir / "stats.csv"
    if not path.is_file():
        return {"successful": 0, "failed": 0, "retransmissions": 0}
    rows = list(csv.DictReader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    last = rows[-1] if rows else {}
    return {
        "successful": int(last.get("SuccessfulCall(C)") or 0),
        "failed": int(last.get("FailedCall(C)") or 0),
        "retransmissions": int(last.get("Retransmissions(C)") or 0),
    }


def read_answer_ms(run_dir: Path) -> list[float]:
    """Each answered call's INVITE-to-200 time in ms, from SIPp's -trace_rtt CSV (response time 1)."""
    found: list[float] = []
    for path in run_dir.glob("*_rtt.csv"):
        for row in csv.DictReader(path.read_text(errors="replace").splitlines(), delimiter=";"):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                found.append(float(row["response_time_ms"]))
    return found


def summarize(calls: int, stats: dict[str, int], answer_ms: list[float], queue: dict[str, int]) -> dict[str, Any]:
    """The report: SIPp's counts and answer times, and what our queue made of the calls.

    ``failed`` is a call that did not run SIPp's scenario to its end (refused, unanswered, or hung up on by the
    stack before the caller's BYE); ``lost`` is an answered call the queue never completed (nor counted
    abandoned: a caller who hung up while queued).
    """
    answered = len(answer_ms)
    return {
        "calls": calls,
        "answered": answered,
        "failed": calls - stats["successful"],
        "admitted": queue["admitted"],
        "completed": queue["completed"],
        "abandoned": queue["abandoned"],
        "lost": max(0, answered - queue["completed"] - queue["abandoned"]),
        "sipp": stats,
        "answer_ms": percentiles(answer_ms),
    }


async def _queue_settled(stack: RealStack, admitted_at_least: int) -> dict[str, int]:
    """The queue's counters once every admitted call has ended (completed, abandoned or dead), capped."""
    from orchestrator.config import load_settings
    from orchestrator.queue import open_queue

    queue = open_queue(load_settings(data_dir=stack.data_dir), stack.redis_url, prefix=PREFIX)
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + SETTLE_CAP_S
        while True:
            stats = await queue.stats()
            ended = stats.completed + stats.abandoned + stats.dead_letters
            settled = not stats.waiting + stats.in_flight + stats.retries_scheduled
            if (settled and stats.admitted >= admitted_at_least and ended >= stats.admitted) or loop.time() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await queue.aclose()
    return {
        "admitted": stats.admitted,
        "completed": stats.completed,
        "abandoned": stats.abandoned,
        "dead_letters": stats.dead_letters,
        "duplicates": stats.duplicates,
    }


async def _records(stack: RealStack, count: int) -> list[dict[str, Any]]:
    """The calls' records (written as each agent job ends), once ``count`` are there or after a cap."""
    from orchestrator.config import load_settings
    from orchestrator.runtime import Services
    from orchestrator.store.records import CallStore

    loop = asyncio.get_running_loop()
    async with await Services.open(load_settings(data_dir=stack.data_dir), seed=False) as services:
        store = CallStore(services.engine)
        deadline = loop.time() + SETTLE_CAP_S
        while True:
            calls = await store.list_calls()
            if len(calls) >= count or loop.time() > deadline:
                break
            await asyncio.sleep(0.5)
        return [view.to_json() for c in calls if (view := await store.get_call(c.call_id)) is not None]


async def _run_sipp(stack: RealStack, argv: list[str], sipp_dir: Path, cap_s: float) -> int | None:
    """SIPp in the caller's namespace, from ``sipp_dir`` (its scenario, speech and traces); its exit code."""
    with (sipp_dir / "sipp.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *stack.pair.command(stack.pair.caller_ns, argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=sipp_dir,
            start_new_session=True,
        )
    try:
        return await asyncio.wait_for(proc.wait(), cap_s)
    except TimeoutError:
        return None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def run_sip_bench(
    calls: int,
    *,
    rate: float,
    hold_s: float,
    run_dir: Path,
    server: Path = LIVEKIT_SERVER,
    slots: int | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Start the stack with livekit-sip (``slots`` agent slots, one per call by default), run SIPp, report.

    The report also keeps SIPp's exit code and the setup's result under ``detail``.
    """
    said = on_progress or (lambda _line: None)
    sipp_dir = sipp_folder(run_dir)
    shutil.copy(SCENARIO, sipp_dir / SCENARIO.name)
    # Past the BYE, so the line never falls silent while the caller is on it.
    write_speech(sipp_dir / "speech.ulaw", line_s=hold_s + 5.0)
    with contextlib.ExitStack() as cleanup:
        pair = cleanup.enter_context(netns_pair())
        stack = cleanup.enter_context(
            real_stack(pair, run_dir / "stack", server=server, slots=slots or calls, on_progress=said)
        )
        said("starting livekit-sip")
        start_sip(stack)
        said("creating the trunk and dispatch rule (sip setup)")
        setup = sip_setup(stack)
        said("starting the queue worker")
        stack.start_queue_worker()
        said(f"SIPp places {calls} calls ({rate:g} a second), each {hold_s:g} s on the line")
        argv = sipp_argv(stack, calls=calls, rate=rate, hold_s=hold_s, sip_port=SIP_PORT)
        cap_s = calls / rate + hold_s + SIPP_SLACK_S + 60
        code = asyncio.run(_run_sipp(stack, argv, sipp_dir, cap_s))
        stack.check_alive()
        stats, answer_ms = read_stats(sipp_dir), read_answer_ms(sipp_dir)
        said("waiting for the queue to settle")
        queue = asyncio.run(_queue_settled(stack, len(answer_ms)))
        records = asyncio.run(_records(stack, queue["completed"]))
    (run_dir / "records.json").write_text(json.dumps(records, default=str))
    report = summarize(calls, stats, answer_ms, queue)
    report["detail"] = {
        "sipp_exit": code,
        "slots": slots or calls,
        "setup": setup,
        **queue,
        "records": len(records),
        # Calls where the agent heard the caller's question (a turn), which came over RTP from SIPp.
        "heard_caller": sum(1 for r in records if any(t.get("caller") for t in r["turns"])),
    }
    return report
