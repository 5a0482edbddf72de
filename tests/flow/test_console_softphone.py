"""The console's softphone in real headless Chromium against the real voice stack, nothing stood in.

livekit-server, the API and both workers run in the server's namespace; Chromium (its microphone a WAV of
flite's speech) and the `livekit` rtc caller run in the caller's. The browser reaches the API and the server's
signalling on 127.0.0.1 through a loopback bridge, and its media crosses the veth link. What each side hears is
recorded (Web Audio in the page, the rtc SDK at the caller) and checked with the local Whisper STT.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import Browser, Page, async_playwright

from orchestrator.devstack import caller as caller_module
from orchestrator.devstack.browser import (
    CHROMIUM,
    PAGE_RECORDER,
    TAP_MODULE,
    chromium_args,
    chromium_in,
    fake_microphone,
    loopback_bridge,
)
from orchestrator.devstack.netns import NamespacesUnavailable, NetnsPair, netns_pair, netns_supported
from orchestrator.devstack.stack import API_PORT, LIVEKIT_SERVER, SIGNAL_PORT, RealStack, real_stack

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: run deploy/dev/tools.sh (make tools)"),
    pytest.mark.skipif(netns_supported() is not None, reason=str(netns_supported())),
    pytest.mark.skipif(shutil.which("flite") is None, reason="no flite: apt-get install -y flite"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install -y chromium"),
    # Start-up loads the models in three processes; every wait inside has its own cap.
    pytest.mark.timeout(900),
]

API = f"http://127.0.0.1:{API_PORT}"
PASSWORD = "correct horse battery"
MARIA = "+15550100001"
# Maria's call from the browser: asks, verifies with her ZIP digit by digit, asks again.
TALK = ["What's my balance?", "1 0 0 2 7", "Is there an outage in my area?"]
# Room for each answer before the next words (the file plays on, whatever the agent does).
TALK_GAP_S = 14.0
CALLER_TURNS = ["Hello there.", "What's my balance?"]
SUPERVISOR_SAYS = "Hello, this is a supervisor. I am taking over your call now."
CALLER_SCRIPT = Path(caller_module.__file__)
ROOT = Path(__file__).resolve().parents[2]
# Caps on hung steps, not speed claims: a busy 2-core machine runs all of this slowly.
STEP_CAP_S = 180.0
CALL_CAP_S = 300
# 10 ms frames louder than this are speech (flite through Opus; the network's comfort noise is far below).
SPEECH_RMS = 300.0
ARTIFACTS = ROOT / "artifacts" / "softphone"


@dataclass
class Env:
    pair: NetnsPair
    stack: RealStack
    run_dir: Path
    chromium: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    run_dir = tmp_path_factory.mktemp("softphone")
    with contextlib.ExitStack() as cleanup:
        try:
            pair = cleanup.enter_context(netns_pair())
        except NamespacesUnavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        stack = cleanup.enter_context(real_stack(pair, run_dir))
        stack.start_queue_worker()
        for name in ("sam", "kim"):
            subprocess.run(
                [sys.executable, "-m", "orchestrator.cli", "users", "add", name, "--role", "supervisor"]
                + ["--password-stdin"],
                input=PASSWORD,
                text=True,
                check=True,
                capture_output=True,
                env=stack.env(),
                cwd=ROOT,
            )
        cleanup.enter_context(loopback_bridge(pair, [API_PORT, SIGNAL_PORT]))
        yield Env(pair, stack, run_dir, chromium_in(pair, run_dir))


async def until(check: Callable[[], Awaitable[Any]], what: str, env: Env, cap_s: float = STEP_CAP_S) -> Any:
    deadline = time.monotonic() + cap_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{env.stack.logs()}")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def browser_page(env: Env, microphone: Path | None, *, loop: bool) -> AsyncIterator[Page]:
    """A logged-in console page in Chromium inside the caller's namespace."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(env.chromium), args=chromium_args(microphone, loop=loop), headless=True
        )
        try:
            # bypass_csp for the recorder's worklet (see `PAGE_RECORDER`); the policy's connect-src for the LiveKit
            # server is checked in test_console_softphone_denied.
            yield await login(browser, "sam")
        finally:
            await browser.close()


async def login(browser: Browser, username: str) -> Page:
    context = await browser.new_context(base_url=API, permissions=["microphone"], bypass_csp=True)
    page = await context.new_page()
    await page.goto("/console/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-btn")
    await page.wait_for_url("**/console/calls")
    return page


async def lines(page: Page) -> list[dict[str, str]]:
    result: list[dict[str, str]] = await page.eval_on_selector_all(
        "#transcript .line", "els => els.map(e => ({role: e.dataset.role, text: e.textContent.trim()}))"
    )
    return result


async def tap(page: Page, name: str, which: str) -> bool:
    """Record a track in the page: ``mic`` (its own), or the first remote one whose identity starts with ``which``."""
    found: bool = await page.evaluate(
        """([name, which]) => {
          const phone = window.switchboardSoftphone, recorder = window.switchboardRecorder;
          if (!phone.room) return false;
          if (which === "mic") {
            if (!phone.micTrack) return false;
            recorder.tap(name, phone.micTrack.mediaStreamTrack);
            return true;
          }
          for (const p of phone.room.remoteParticipants.values()) {
            const agent = p.kind === "agent" || p.kind === 4 || p.identity.startsWith("agent-");
            const match = which === "agent" ? agent : p.identity.startsWith(which);
            if (!match) continue;
            for (const pub of p.audioTrackPublications.values()) {
              if (pub.track) { recorder.tap(name, pub.track.mediaStreamTrack); return true; }
            }
          }
          return false;
        }""",
        [name, which],
    )
    return found


async def recording(page: Page, name: str) -> tuple[float, np.ndarray[Any, np.dtype[np.int16]]]:
    """What the page recorded under ``name``: its start (the page's audio clock) and 16 kHz int16 samples."""
    taken = await page.evaluate("(name) => window.switchboardRecorder.take(name)", name)
    assert taken is not None, f"nothing recorded as {name}"
    pcm = np.frombuffer(base64.b64decode(taken["pcm"]), dtype=np.int16)
    return float(taken["start"]), pcm


def frames_rms(pcm: np.ndarray[Any, np.dtype[np.int16]], rate: int = 16000) -> np.ndarray[Any, np.dtype[np.float64]]:
    size = rate // 100
    usable = pcm[: len(pcm) // size * size].astype(np.float64).reshape(-1, size)
    return np.sqrt((usable**2).mean(axis=1))


def speech_ends(rms: np.ndarray[Any, np.dtype[np.float64]], *, quiet_frames: int = 50) -> list[int]:
    """Frames where speech stops and at least ``quiet_frames`` (10 ms each) of silence follow."""
    loud = rms >= SPEECH_RMS
    ends = []
    for i in range(1, len(loud)):
        if loud[i - 1] and not loud[i : i + quiet_frames].any() and len(loud) - i >= quiet_frames:
            ends.append(i)
    return ends


def transcribe(pcm: np.ndarray[Any, np.dtype[np.int16]]) -> str:
    from orchestrator.providers.stt import WhisperSTT

    return WhisperSTT().transcribe(pcm.astype(np.float32) / 32768.0)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def keep(name: str, pcm: np.ndarray[Any, np.dtype[np.int16]]) -> None:
    """Keep a recording in artifacts/softphone/ (git-ignored) to listen to after a run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with wave.open(str(ARTIFACTS / f"{name}.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())


def read_wav(path: str) -> np.ndarray[Any, np.dtype[np.int16]]:
    with wave.open(path) as w:
        assert w.getframerate() == 16000
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


async def checkpoint(env: Env, call_id: str) -> dict[str, Any]:
    from orchestrator.config import load_settings
    from orchestrator.runtime import Services
    from orchestrator.worker.runner import checkpoint_state

    async with await Services.open(load_settings(data_dir=env.stack.data_dir), seed=False) as services:
        return await checkpoint_state(services, call_id)


async def test_a_browser_calls_the_agent_and_hears_it_answer_each_turn(env: Env) -> None:
    from orchestrator.telemetry.wer import word_error_rate

    microphone = env.run_dir / "talk.wav"
    fake_microphone(microphone, TALK, lead_s=2.0, gap_s=TALK_GAP_S)
    async with browser_page(env, microphone, loop=False) as page:
        await page.goto("/console/talk")
        await page.fill("#talk-caller-id", MARIA)
        await page.click("#talk-call")

        async def state() -> str | None:
            return await page.get_attribute("#talk", "data-state")

        await until(lambda: _is(state, "live"), "the agent to answer the browser's call", env)
        await page.evaluate(PAGE_RECORDER, TAP_MODULE)
        await until(lambda: tap(page, "mic", "mic"), "the page's microphone", env)
        await until(lambda: tap(page, "agent", "agent"), "the agent's audio track", env)
        call_id = await page.get_attribute("#talk", "data-call-id")
        assert call_id is not None
        assert call_id.startswith("lk-RM_")

        async def answered() -> bool:
            said = await lines(page)
            return sum(ln["role"] == "agent" for ln in said) >= len(TALK)

        await until(answered, "the agent's answer to every turn in the page's transcript", env, cap_s=CALL_CAP_S)
        mic_start, mic = await recording(page, "mic")
        agent_start, agent = await recording(page, "agent")
        page_lines = await lines(page)
        await page.click("#talk-hang-up")
        await until(lambda: _is(state, "idle"), "the hang-up", env)
    keep("talk-microphone", mic)
    keep("talk-heard", agent)
    # The browser's words reached the agent's STT, and every turn was answered in order.
    state_now = await checkpoint(env, call_id)
    transcript = state_now["transcript"]
    assert [t["role"] for t in transcript] == ["caller", "agent"] * len(TALK), transcript
    assert "balance" in transcript[0]["text"].lower(), transcript[0]
    assert [ln["role"] for ln in page_lines if ln["role"] in ("caller", "agent")] == ["caller", "agent"] * len(TALK)
    # First audio the browser heard after each of its turns ended, on the page's one audio clock.
    mic_rms, agent_rms = frames_rms(mic), frames_rms(agent)
    offset = round((agent_start - mic_start) * 100)  # agent frame i is mic frame i + offset
    ends = speech_ends(mic_rms)[: len(TALK)]
    latencies = []
    for end in ends:
        after = [i + offset for i in np.flatnonzero(agent_rms >= SPEECH_RMS) if i + offset >= end]
        if after:
            latencies.append(int(after[0] - end) * 10)
    assert len(latencies) == len(TALK), latencies
    # What the page heard after each turn is what the graph said, through the SFU and Opus: the STT agrees with
    # it (one reply at a time: Whisper skips words in a recording longer than its 30 s window).
    said = [t["text"] for t in transcript if t["role"] == "agent"]
    cuts = [max(0, (end - offset) * 160) for end in ends] + [len(agent)]
    heard = [transcribe(agent[a:b]) for a, b in itertools.pairwise(cuts)]
    wer = word_error_rate(" ".join(said), " ".join(heard))
    assert wer <= 0.35, f"said {said!r}, heard {heard!r}"
    p50 = statistics.median(latencies)
    print(f"\nsoftphone talk: first audio heard by the browser {latencies} ms (P50 {p50:.0f} ms); heard WER {wer:.2f}")
    print(f"load average {load_average()}")


async def _is(read: Callable[[], Awaitable[str | None]], want: str) -> bool:
    return await read() == want


async def _is_text(page: Page, selector: str, want: str) -> bool:
    return await page.inner_text(selector) == want


@contextlib.contextmanager
def rtc_caller(env: Env, turns: list[str], pauses: str) -> Iterator[subprocess.Popen[str]]:
    room = f"call-{secrets.token_hex(4)}"
    token = env.stack.token(room, f"caller-{secrets.token_hex(3)}", metadata={"caller_id": MARIA})
    out_dir = env.run_dir / "caller"
    out_dir.mkdir(exist_ok=True)
    argv = [sys.executable, str(CALLER_SCRIPT), env.stack.caller_url, token, str(out_dir), json.dumps(turns), pauses]
    log = env.run_dir / "caller.log"
    with log.open("w") as errors:
        proc = subprocess.Popen(
            env.pair.command(env.pair.caller_ns, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=env.stack.env(),
            cwd=ROOT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def next_report(proc: subprocess.Popen[str], env: Env) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), CALL_CAP_S)
    assert line, f"the caller ended (exit {proc.poll()}):\n{(env.run_dir / 'caller.log').read_text()[-3000:]}"
    report: dict[str, Any] = json.loads(line)
    return report


def tell(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()


async def test_a_supervisor_listens_in_then_barges_in_and_each_side_hears_the_other(env: Env) -> None:
    microphone = env.run_dir / "supervisor.wav"
    fake_microphone(microphone, [SUPERVISOR_SAYS], lead_s=1.0, gap_s=2.0)
    with rtc_caller(env, CALLER_TURNS, "1,2") as caller:
        paused = await next_report(caller, env)
        assert paused["paused"] == 1, paused
        call_id = f"lk-{paused['room_sid']}"
        async with browser_page(env, microphone, loop=True) as page:
            await page.goto(f"/console/calls/{call_id}")

            async def phone() -> str | None:
                return await page.get_attribute("#softphone", "data-state")

            await page.click("#sp-listen")
            await until(lambda: _is(phone, "listen"), "the supervisor to be listening", env)
            await page.evaluate(PAGE_RECORDER, TAP_MODULE)
            await until(lambda: tap(page, "caller", "caller-"), "the caller's audio at the supervisor", env)
            # The caller speaks its next turn while the supervisor listens; the AI still answers it.
            tell(caller)
            paused = await next_report(caller, env)
            assert paused["paused"] == 2, paused
            _start, from_caller = await recording(page, "caller")
            # Kim takes the call over first: Sam's barge is refused, and Sam goes on listening.
            assert page.context.browser is not None
            kim = await login(page.context.browser, "kim")
            await kim.goto(f"/console/calls/{call_id}")
            await kim.click("#take-over-btn")

            async def held_by_kim() -> bool:
                return await page.inner_text("#f-controller") == "kim"

            await until(held_by_kim, "kim to hold the call", env)
            await page.click("#sp-barge")
            await page.locator("#sp-error").wait_for(state="visible")
            assert "kim" in await page.inner_text("#sp-error")
            assert await phone() == "listen"
            assert await page.inner_text("#sp-state") == "Listening in: the caller cannot hear or see you."
            await kim.click("#release-btn")
            await until(lambda: _is_text(page, "#f-controller", "the AI"), "kim to send the call back", env)
            await page.click("#sp-barge")
            await until(lambda: _is(phone, "barge"), "the supervisor to be on the call with a microphone", env)
            await page.evaluate(PAGE_RECORDER, TAP_MODULE)
            await until(lambda: tap(page, "mic", "mic"), "the supervisor's microphone", env)
            loop_s = 1.0 + 2.0 + 4.0  # lead, gap, and the words: a generous bound on one pass of the file

            async def spoken() -> bool:
                seconds: float = await page.evaluate("() => window.switchboardRecorder.seconds('mic')")
                return seconds >= 2 * loop_s

            await until(spoken, "the supervisor's microphone to have played its words twice", env)
            await page.click("#sp-leave")
            await until(lambda: _is(phone, "idle"), "the supervisor to leave", env)

            async def released() -> bool:
                return any("sam sent the call back to the AI" in ln["text"] for ln in await lines(page))

            await until(released, "the call to go back to the AI", env)
            console_lines = await lines(page)
        tell(caller)
        out, _ = await asyncio.to_thread(caller.communicate, timeout=CALL_CAP_S)
    keep("barge-heard-by-supervisor", from_caller)
    result = json.loads(out.strip().splitlines()[-1])
    assert caller.returncode == 0, result.get("error")
    assert all(t["answered"] for t in result["turns"]), result["turns"]
    # The supervisor, listening, heard the caller's words.
    heard_by_supervisor = transcribe(from_caller).lower()
    assert "balance" in heard_by_supervisor, heard_by_supervisor
    # The caller heard the supervisor once they barged in.
    heard_by_caller = transcribe(read_wav(result["people_wav"])).lower()
    assert "taking over your call" in heard_by_caller, heard_by_caller
    events = [ln["text"] for ln in console_lines if ln["role"] == "event"]
    took, barged, back = (
        next(i for i, e in enumerate(events) if needle in e)
        for needle in (
            "sam took over the call.",
            "sam barged in with a microphone.",
            "sam sent the call back to the AI",
        )
    )
    assert took < barged < back, events
    print(f"\nsoftphone barge: supervisor heard {heard_by_supervisor!r}; caller heard {heard_by_caller!r}")
