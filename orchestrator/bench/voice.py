"""Voice benchmark: first-audio latency of our turn path vs an LLM-router baseline, providers simulated by profile."""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from livekit.agents import UserInputTranscribedEvent, llm, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from opentelemetry.trace import Tracer

from agents.context import AgentContext, IntentPrefetch
from agents.ports import IntentPrediction
from orchestrator.config import Settings
from orchestrator.heap import settle_heap
from orchestrator.providers.intent_process import ProcessIntentClassifier
from orchestrator.providers.phrase_cache import CachedStream, CachedTTS, PhraseCache, phrase_sentences, split_sentences
from orchestrator.providers.tts import LocalTTSUnavailable
from orchestrator.providers.voice import open_voice
from orchestrator.runtime import Services
from orchestrator.scenarios import simulated_caller
from orchestrator.session.audio import AudioCall
from orchestrator.session.graph_llm import GraphLLM, is_end_of_reply
from orchestrator.stats import percentile
from orchestrator.telemetry.tracing import GraphSpanHandler

__all__ = ["Profile", "SimulatedTTS", "percentile", "run_voice_bench"]

# First turns of the real audio calls (`_embedded`), one per specialist.
UTTERANCES = [
    "What's my balance?",
    "I need to book a technician visit.",
    "My internet keeps dropping.",
]


@dataclass(frozen=True)
class Profile:
    """The standard simulated-provider profile (DESIGN.md §6), in seconds.

    `endpointing_s` is not a provider: it is how long the session waits after the final transcript before it
    commits the turn. The standard profile has none (the turn starts at the final). A live session with a
    streaming STT has one: it commits after the VAD's 0.4 s of silence, and the final (150 ms here; Deepgram
    finalises after 25 ms of silence) comes before that, so about 0.25 s; the intent model runs in that wait
    (`GraphLLM.on_transcribed`). Both designs wait it; it is not part of our overhead.
    """

    stt_final_s: float = 0.150
    llm_first_token_s: float = 0.300
    tts_first_byte_s: float = 0.080
    endpointing_s: float = 0.0


class SimulatedTTS(tts.TTS[Any]):
    """A TTS stand-in: first audio after `first_byte_s`, then 100 ms of silence per 10 characters."""

    def __init__(self, first_byte_s: float, *, sample_rate: int = 16000) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=sample_rate, num_channels=1)
        self.first_byte_s = first_byte_s

    def cache_identity(self) -> dict[str, Any]:
        return {"provider": "simulated", "sample_rate": self.sample_rate}

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _SimStream(tts=self, input_text=text, conn_options=conn_options)


class _SimStream(tts.ChunkedStream):
    _tts: SimulatedTTS

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(), sample_rate=self._tts.sample_rate, num_channels=1, mime_type="audio/pcm"
        )
        await asyncio.sleep(self._tts.first_byte_s)
        samples = self._tts.sample_rate // 10 * max(1, len(self._input_text) // 10)
        output_emitter.push(b"\0\0" * samples)
        output_emitter.flush()


@dataclass
class _Sample:
    first_audio: float
    overhead: float
    tenant: float = 0.0  # waiting on the tenant's systems (accounts, slots, invoices) before first audio
    router: float = 0.0  # part of `overhead`: `route` waiting for the intent model (`_TimedIntents`)


# The running turn's time in the tenant's systems, summed by `_TimedPort` (a list, so tasks share it).
_tenant_wait: ContextVar[list[float] | None] = ContextVar("bench_tenant_wait", default=None)
# The running turn's wait for the intent model in `route`, summed by `_TimedIntents`.
_router_wait: ContextVar[list[float] | None] = ContextVar("bench_router_wait", default=None)


def _add_since(tally: ContextVar[list[float] | None], start: float) -> None:
    """Add the time since `start` to the running turn's `tally` (there is none outside a measured turn)."""
    if (spent := tally.get()) is not None:
        spent[0] += time.perf_counter() - start


class _TimedPort:
    """A tenant port that adds the time of every call it forwards to the running turn's tally.

    The tenant's systems (here the embedded demo store; in production the tenant's CRM and billing)
    are a stage of their own, like a provider: the bench reports their time beside our overhead.
    """

    def __init__(self, port: object) -> None:
        self._port = port

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._port, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            finally:
                _add_since(_tenant_wait, start)

        return timed


class _TimedIntents(IntentPrefetch):
    """The router's classifications, with the time `route` waits for one added to the running turn's tally.

    Only the wait counts: a classification started early (`router.speculate`) that is done by the time
    `route` asks costs the turn nothing. The wait stays part of our overhead (the model is ours); the bench
    reports it beside the overhead, so the router model's share of the overhead is visible (DESIGN §6
    asks for the turn split into its stages).
    """

    async def result(self, key: tuple[str, str]) -> IntentPrediction:
        start = time.perf_counter()
        try:
            return await super().result(key)
        finally:
            _add_since(_router_wait, start)


def _timed_context(context: AgentContext) -> AgentContext:
    """The agents' context with every tenant port timed (`_TimedPort`) and the router's wait (`_TimedIntents`)."""
    tenant = context.tenant
    ports: dict[str, Any] = {f.name: _TimedPort(getattr(tenant, f.name)) for f in fields(tenant) if f.name != "name"}
    timed = replace(context, tenant=replace(tenant, **ports))
    timed.intents = _TimedIntents(timed.classifier)
    return timed


async def _first_sentence(stream: llm.LLMStream, ready: asyncio.Future[str]) -> None:
    """Read a turn's stream to its end; resolve `ready` with the first sentence once it is complete.

    A sentence is complete when the next one starts or when the graph marks the reply complete: the
    voice session flushes its sentence splitter there (`GraphAgent`), before the turn's checkpoint write.
    The stream is still read to its end, as the session does, so the rest of the turn costs what it costs.
    """
    buffer = ""
    try:
        async with stream:
            async for chunk in stream:
                if ready.done():
                    continue
                if is_end_of_reply(chunk):
                    ready.set_result(await _first_of(buffer))
                    continue
                buffer += (chunk.delta.content or "") if chunk.delta else ""
                sentences = await split_sentences(buffer)
                if len(sentences) > 1:
                    ready.set_result(sentences[0])
    except Exception as exc:  # noqa: BLE001 - handed to the waiting turn, which raises it
        if not ready.done():
            ready.set_exception(exc)
        return
    if not ready.done():
        ready.set_result(await _first_of(buffer))


async def _first_of(text: str) -> str:
    sentences = await split_sentences(text)
    return sentences[0] if sentences else ""


class _OurCall:
    """One call in progress on our design: one `GraphLLM` (one graph thread) for all its turns, as a session has.

    Each turn: STT final → GraphLLM (classifier + graph) → first sentence → phrase cache / TTS. The turn goes
    through `GraphLLM`, the adapter a voice session uses, so its own costs count too; and from the second
    turn on, the graph resumes the call from its checkpoint, with the call's history, as a live call does.
    """

    def __init__(
        self,
        services: Services,
        context: AgentContext,
        speaker: CachedTTS,
        profile: Profile,
        caller_id: str | None,
        *,
        tracer: Tracer | None = None,
    ) -> None:
        call_id = f"bench-{uuid.uuid4().hex[:12]}"
        # With a tracer, each node and tool becomes a span, as in a worker (`GraphSpanHandler`).
        callbacks = [GraphSpanHandler(tracer, call_id=call_id)] if tracer is not None else []
        self.graph_llm = GraphLLM(services.graph, context, call_id=call_id, caller_id=caller_id, callbacks=callbacks)
        self.speaker = speaker
        self.profile = profile

    async def start(self) -> None:
        """What a session does as the call starts, while the caller hears the greeting."""
        await self.graph_llm.prepare()

    async def __call__(self, utterance: str) -> _Sample:
        profile = self.profile
        end_of_speech = time.perf_counter()
        await asyncio.sleep(profile.stt_final_s)  # the STT provider finalising
        self.graph_llm.on_transcribed(UserInputTranscribedEvent(transcript=utterance, is_final=True))
        if profile.endpointing_s:
            await asyncio.sleep(profile.endpointing_s)  # the session waiting for the end of the turn
        tenant, router = [0.0], [0.0]
        _tenant_wait.set(tenant)  # the turn's tasks, created below, share them
        _router_wait.set(router)
        chat_ctx = llm.ChatContext.empty()
        chat_ctx.add_message(role="user", content=utterance)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        rest_of_turn = asyncio.create_task(_first_sentence(self.graph_llm.chat(chat_ctx=chat_ctx), ready))
        sentence = await ready
        async with self.speaker.synthesize(sentence) as audio:
            async for _ in audio:
                break
        first_audio = time.perf_counter() - end_of_speech
        waited, routed = tenant[0], router[0]
        await rest_of_turn  # the turn ends (its checkpoint written) before the caller speaks again
        cached = isinstance(audio, CachedStream) and audio.record.cached
        providers = profile.stt_final_s + profile.endpointing_s + (0.0 if cached else profile.tts_first_byte_s)
        overhead = first_audio - providers - waited
        return _Sample(first_audio=first_audio, overhead=overhead, tenant=waited, router=routed)


async def _baseline(speaker: tts.TTS[Any], profile: Profile, utterance: str) -> _Sample:
    """The LLM-router design: STT final → router LLM → specialist LLM first token → TTS first byte."""
    end_of_speech = time.perf_counter()
    await asyncio.sleep(profile.stt_final_s + profile.endpointing_s)
    await asyncio.sleep(profile.llm_first_token_s)  # router LLM: its (short) answer decides the specialist
    await asyncio.sleep(profile.llm_first_token_s)  # specialist LLM: first token of the reply
    async with speaker.synthesize(utterance) as audio:
        async for _ in audio:
            break
    first_audio = time.perf_counter() - end_of_speech
    providers = profile.stt_final_s + profile.endpointing_s + 2 * profile.llm_first_token_s + profile.tts_first_byte_s
    return _Sample(first_audio=first_audio, overhead=first_audio - providers)


Turn = Callable[[str], Awaitable[_Sample]]
NewCall = Callable[[str | None], Turn]  # a call from this caller ID (None: withheld)


class _Line:
    """A line that takes calls one after another: the demo's scripted callers (`simulated_caller`), each
    call turn by turn to its end, then the next. Verification answers, slot answers, topic changes and
    escalations all come up, as in live traffic; `calls` numbers the calls across all lines."""

    def __init__(self, new_call: NewCall, calls: Iterator[int]) -> None:
        self._new_call = new_call
        self._calls = calls
        self._call: Turn | None = None
        self._script: list[str] = []

    async def turn(self) -> _Sample:
        if not self._script or self._call is None:
            caller = simulated_caller(next(self._calls))
            self._call, self._script = self._new_call(caller.caller_id), list(caller.turns)
            if isinstance(self._call, _OurCall):
                await self._call.start()
        return await self._call(self._script.pop(0))


async def _level(concurrency: int, total: int, new_call: NewCall) -> list[_Sample]:
    """Burst: every caller takes its next turn the moment the last one ended (the worst case)."""
    counter, calls = itertools.count(), itertools.count()
    samples: list[_Sample] = []

    async def caller() -> None:
        line = _Line(new_call, calls)
        while next(counter) < total:
            samples.append(await line.turn())

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(caller())
    return samples


async def _paced(
    concurrency: int, duration_s: float, cycle_s: float, new_call: NewCall, seed: int = 7, min_turns: int = 0
) -> list[_Sample]:
    """Paced: each call takes a turn about every `cycle_s` (caller speaks, agent answers), as live calls do.

    Calls start at random offsets within one cycle and jitter ±25 % around it, so `concurrency` calls
    in progress give about concurrency / cycle_s turns a second, not all turns at once. It runs for
    `duration_s` and on until `min_turns` turns are measured (few calls take few turns a second).
    """
    rng = random.Random(seed)
    samples: list[_Sample] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + duration_s

    calls = itertools.count()

    async def caller(offset: float) -> None:
        await asyncio.sleep(offset)
        line = _Line(new_call, calls)
        while loop.time() < end or len(samples) < min_turns:
            samples.append(await line.turn())
            await asyncio.sleep(cycle_s * rng.uniform(0.75, 1.25))

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(caller(rng.uniform(0, cycle_s)))
    return samples


def _summary(ours: list[_Sample], base: list[_Sample]) -> dict[str, Any]:
    ours_fa = [s.first_audio for s in ours]
    base_fa = [s.first_audio for s in base]
    routed = [s.overhead for s in ours if s.router > 0]
    unrouted = [s.overhead for s in ours if s.router == 0]
    return {
        "turns": len(ours),
        "ours": {
            "p50": _ms(percentile(ours_fa, 50)),
            "p95": _ms(percentile(ours_fa, 95)),
            "p99": _ms(percentile(ours_fa, 99)),
            "overhead_p50": _ms(percentile([s.overhead for s in ours], 50)),
            "overhead_p99": _ms(percentile([s.overhead for s in ours], 99)),
            # The tenant's systems are a stage of their own (see `_TimedPort`); for the whole picture,
            # our overhead with their time added back:
            "tenant_p50": _ms(percentile([s.tenant for s in ours], 50)),
            "tenant_p99": _ms(percentile([s.tenant for s in ours], 99)),
            "overhead_with_tenant_p99": _ms(percentile([s.overhead + s.tenant for s in ours], 99)),
            # Part of the overhead: `route` waiting for the intent model (`_TimedIntents`), and the rest.
            "router_wait_p50": _ms(percentile([s.router for s in ours], 50)),
            "router_wait_p99": _ms(percentile([s.router for s in ours], 99)),
            "overhead_without_router_p99": _ms(percentile([s.overhead - s.router for s in ours], 99)),
            # The overhead of the turns that waited for the intent model, and of those that did not.
            "routed_turns": len(routed),
            "overhead_routed_p99": _ms(percentile(routed, 99)) if routed else None,
            "overhead_unrouted_p99": _ms(percentile(unrouted, 99)) if unrouted else None,
        },
        "baseline": {
            "p50": _ms(percentile(base_fa, 50)),
            "p95": _ms(percentile(base_fa, 95)),
            "p99": _ms(percentile(base_fa, 99)),
        },
        "speedup_p50": round(statistics.median(base_fa) / statistics.median(ours_fa), 2),
    }


def _ms(v: float) -> float:
    return round(v * 1000, 1)


async def run_voice_bench(
    settings: Settings,
    *,
    calls: int = 200,
    levels: list[int] | None = None,
    embedded: bool = True,
    profile: Profile | None = None,
    cycle_s: float = 4.0,
    paced_s: float = 12.0,
    tracer: Tracer | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the simulated-provider comparison at each concurrency level (and the real embedded stack at 1 and 2).

    Args:
        settings: base settings; the bench uses its own temporary data folder.
        calls: turns measured (at least) per level and design, paced and burst alike.
        levels: concurrency levels (default 1, 10, 50, 100).
        embedded: also measure real audio calls on the local stack.
        cycle_s: paced mode: seconds between one call's turns (the caller speaks, the agent answers).
        paced_s: paced mode: how long each level runs.
        tracer: trace every turn with it, as a worker does (`switchboard bench voice` passes one).
        on_progress: told, in a line, what is being measured next.

    Each level is measured twice: paced (the headline numbers: calls in progress, each taking a turn
    about every `cycle_s`) and burst (every call takes its next turn at once, back to back: the worst
    case, where one process's per-turn CPU time queues up on its event loop). The calls are the demo's
    scripted callers (`_Line`), each to its end, so the turns mix as in live traffic. Our overhead is
    first audio minus the simulated providers and minus the time spent in the tenant's systems, which
    is reported beside it (`tenant_*`, and `overhead_with_tenant_p99` for the two together). The part
    of the overhead spent waiting for the intent model is reported too (`router_wait_*`, and
    `overhead_without_router_p99` for the rest).
    """
    profile = profile or Profile()
    levels = levels or [1, 10, 50, 100]
    out: dict[str, Any] = {
        "profile": {**{k: _ms(v) for k, v in asdict(profile).items()}, "turn_cycle_ms": _ms(cycle_s)},
        "runs": [],
        "traced": tracer is not None,
    }
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        bench_settings = settings.model_copy(update={"data_dir": Path(tmp)})
        async with await Services.open(bench_settings, many_calls=True) as services:
            # A worker's classifier process is up long before its calls come (`ProcessIntentClassifier`).
            classifier = services.classifier
            in_child = isinstance(classifier, ProcessIntentClassifier) and await classifier.wait_ready()
            out["classifier"] = "process" if in_child else "thread"
            cache = PhraseCache(local_entries=1024)
            sentences = await phrase_sentences(services.prompts.phrases())
            ours_tts = CachedTTS(SimulatedTTS(profile.tts_first_byte_s), cache, phrases=sentences)
            # `switchboard tts warm`, in memory
            await asyncio.gather(*(ours_tts.render(sentence) for sentence in sentences))
            baseline_tts = SimulatedTTS(profile.tts_first_byte_s)
            ours: NewCall = functools.partial(
                _OurCall, services, _timed_context(services.context), ours_tts, profile, tracer=tracer
            )
            baseline: NewCall = lambda _caller: functools.partial(_baseline, baseline_tts, profile)  # noqa: E731
            await _level(4, 12, ours)  # warm-up: imports, JIT caches
            settle_heap()  # as a worker does once it has started
            for n in levels:
                if on_progress is not None:
                    on_progress(f"{n} calls at once: paced, then burst (ours and the baseline)")
                paced_ours = await _paced(n, paced_s, cycle_s, ours, min_turns=calls)
                paced_base = await _paced(n, paced_s, cycle_s, baseline, min_turns=calls)
                burst_ours = await _level(n, max(calls, n), ours)
                burst_base = await _level(n, max(calls, n), baseline)
                out["runs"].append(
                    {"concurrency": n, **_summary(paced_ours, paced_base), "burst": _summary(burst_ours, burst_base)}
                )
            out["phrase_cache"] = cache.stats.public()
            if embedded:
                if on_progress is not None:
                    on_progress("the real local stack (Whisper, local TTS) at 1 and 2 calls")
                try:
                    out["embedded"] = await _embedded(bench_settings, services)
                except LocalTTSUnavailable as exc:  # the simulated runs above still count
                    out["embedded"] = {"error": str(exc)}
    return out


async def _embedded(settings: Settings, services: Services) -> list[dict[str, Any]]:
    """Real first-audio latency of the local stack (silero, Whisper tiny.en, local TTS) at 1 and 2 calls."""
    from livekit.agents.utils import http_context

    results = []
    async with http_context.open():
        stacks = [await open_voice(settings, phrases=services.prompts.phrases()) for _ in range(2)]
        try:
            for n in (1, 2):

                async def one(i: int) -> dict[str, Any]:
                    stack = stacks[i]
                    call = AudioCall(
                        services,
                        stt=stack.stt,
                        tts=stack.tts,
                        vad=stack.turn_vad,
                        caller_id="+15550100001",
                        realtime_playout=False,
                    )
                    try:
                        turn = await call.say(UTTERANCES[i % len(UTTERANCES)])
                    finally:
                        await call.aclose()
                    return turn.breakdown

                turns = await asyncio.gather(*(one(i) for i in range(n)))
                first = [t["first_audio"] for t in turns if t["first_audio"] is not None]
                results.append(
                    {
                        "concurrency": n,
                        "first_audio_ms": first,
                        "stt_final_ms": [t["stt_final"] for t in turns],
                        "tts_first_byte_ms": [t["tts_first_byte"] for t in turns],
                    }
                )
        finally:
            for stack in stacks:
                await stack.aclose()
    return results
