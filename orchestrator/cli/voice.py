"""Voice commands for `switchboard`: audio calls on the local transport, phrase-cache warming, voice benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from orchestrator.cli.errors import quiet_logs
from orchestrator.config import Settings, load_settings

__all__ = ["audio_call", "phrase_cache_redis", "register", "warm_phrases"]

tts_app = typer.Typer(help="Text-to-speech: the phrase cache.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks.", no_args_is_help=True)


def _settings() -> Settings:
    return load_settings()  # an invalid setting: one line and exit 2, at the CLI's boundary


@contextlib.contextmanager
def phrase_cache_redis(settings: Settings) -> Iterator[str | None]:
    """The phrase cache's shared tier: REDIS_URL, else a private embedded Redis under data_dir (persisted AOF)."""
    if not settings.phrase_cache_enabled:
        yield None
        return
    from orchestrator.queue.embedded import redis_url

    with redis_url(settings.redis_url, settings.data_dir / "phrase-cache") as url:
        yield url


async def warm_phrases(settings: Settings, redis_url: str | None, *, force: bool = False) -> dict[str, Any]:
    """Pre-render every sentence of `Prompts.phrases()` for the configured voice into the cache."""
    from agents.prompts import Prompts
    from orchestrator.providers.phrase_cache import CachedTTS, PhraseCache, phrase_sentences
    from orchestrator.providers.voice import build_tts

    redis_client = PhraseCache.connect(redis_url, timeout_s=5.0) if redis_url else None
    cache = PhraseCache(
        redis=redis_client,
        local_entries=0,
        ttl_s=settings.phrase_cache_ttl_s,
        version=settings.phrase_cache_version,
    )
    engine = build_tts(settings)
    sentences = await phrase_sentences(Prompts.load(settings.prompts_dir).phrases())
    wrapper = CachedTTS(engine, cache, phrases=sentences)
    started = time.perf_counter()
    removed = await cache.clear() if force else 0
    rendered = already = 0
    audio_s = 0.0
    try:
        for sentence in sentences:
            frame, was_cached = await wrapper.render(sentence)
            audio_s += frame.duration
            if was_cached:
                already += 1
            else:
                rendered += 1
    finally:
        await wrapper.aclose()
        await engine.aclose()
        await cache.aclose()
    return {
        "voice": wrapper.identity,
        "sentences": len(sentences),
        "rendered": rendered,
        "already_cached": already,
        "removed": removed,
        "audio_s": round(audio_s, 2),
        "seconds": round(time.perf_counter() - started, 2),
        "tier": "redis" if redis_url else "local",
    }


async def audio_call(
    settings: Settings,
    say: list[str],
    *,
    caller_id: str | None = None,
    telephony: bool = False,
    pace: float = 1.0,
    redis_url: str | None = None,
) -> dict[str, Any]:
    """One scripted call on the local audio transport; the `call --json` shape plus the audio fields per turn."""
    from livekit.agents.utils import http_context

    from orchestrator.providers.voice import open_voice
    from orchestrator.runtime import Services
    from orchestrator.session.audio import run_audio_call

    async with await Services.open(settings) as services, http_context.open():
        voice = await open_voice(settings, phrases=services.prompts.phrases(), redis_url=redis_url)
        try:
            result = await run_audio_call(
                services,
                say,
                stt=voice.stt,
                tts=voice.tts,
                vad=voice.turn_vad,
                telephony=telephony,
                pace=pace,
                caller_id=caller_id,
            )
        finally:
            await voice.aclose()
        out = result.to_json()
        out["voice"] = {
            "stt": f"{voice.stt.provider}/{voice.stt.model}",
            "tts": voice.tts.identity,
            "line": "8 kHz mu-law" if telephony else "16 kHz linear",
        }
        out["phrase_cache"] = voice.cache.stats.public()
        return out


def call_audio(
    say: Annotated[list[str], typer.Option("--say", help="A caller turn; repeat for each turn.")],
    caller_id: Annotated[str | None, typer.Option("--caller-id", help="Caller ID, e.g. +15550100001.")] = None,
    telephony: Annotated[bool, typer.Option("--telephony", help="8 kHz mu-law line instead of 16 kHz.")] = False,
    pace: Annotated[float, typer.Option("--pace", help="Line speed; 1.0 is real time.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the call as JSON.")] = False,
) -> None:
    """Run one scripted call as audio: caller TTS → line → VAD → STT → graph → TTS (captured)."""
    quiet_logs()
    settings = _settings()
    with phrase_cache_redis(settings) as url:
        out = asyncio.run(audio_call(settings, say, caller_id=caller_id, telephony=telephony, pace=pace, redis_url=url))
    if as_json:
        print(json.dumps(out, indent=2))
        return
    for turn in out["turns"]:
        lat = turn["latency_ms"]
        typer.echo(f"caller: {turn['caller']}\n  heard: {turn['heard']} (WER {turn['wer']:.2f})")
        typer.echo(f"{turn['agent_name']}: {turn['agent']}")
        typer.echo(
            f"  first audio {lat['first_audio']} ms (stt {lat['stt_final']}, graph {lat['graph_first_token']},"
            f" tts {lat['tts_first_byte']}, overhead {lat['overhead']}); {turn['agent_audio_ms']:.0f} ms of audio"
        )
    typer.echo(f"outcome: {out['outcome']}; phrase cache {out['phrase_cache']}")


def register(app: typer.Typer) -> None:
    """Add the voice commands (`call-audio`, `tts warm`, `bench voice`) to the `switchboard` app."""

    app.command("call-audio")(call_audio)

    @app.command("agent-worker")
    def agent_worker() -> None:
        """Run the LiveKit agent worker (explicit dispatch, `/readyz` once registered); needs LIVEKIT_URL."""
        from orchestrator.worker.agent_worker import run_agent_worker

        quiet_logs()
        settings = _settings()
        if not settings.livekit_url:
            typer.echo(
                "agent-worker needs LIVEKIT_URL (and LIVEKIT_API_KEY / LIVEKIT_API_SECRET): the LiveKit server",
                err=True,
            )
            raise typer.Exit(2)
        asyncio.run(run_agent_worker(settings))

    @tts_app.command("warm")
    def tts_warm(
        force: Annotated[bool, typer.Option("--force", help="Drop this version's entries and render again.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Pre-render the phrase list (prompts/) for the configured voice into the phrase cache."""
        quiet_logs()
        settings = _settings()
        with phrase_cache_redis(settings) as url:
            out = asyncio.run(warm_phrases(settings, url, force=force))
        typer.echo(json.dumps(out, indent=2 if as_json else None))

    @bench_app.command("voice")
    def bench_voice(
        calls: Annotated[
            int,
            typer.Option("--calls", min=1, help="Turns measured (at least) per concurrency level, paced and burst."),
        ] = 60,
        levels: Annotated[str, typer.Option("--levels", help="Concurrency levels, comma-separated.")] = "1,10,50,100",
        embedded: Annotated[
            bool, typer.Option("--embedded/--no-embedded", help="Also measure the real local stack at 1 and 2.")
        ] = True,
        endpointing_ms: Annotated[
            float,
            typer.Option(
                "--endpointing-ms",
                help="Wait between the STT final and the turn's commit, as a live session has "
                "(about 250 with Deepgram; 0, the standard profile, starts the turn at the final).",
            ),
        ] = 0.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """First-audio latency with simulated providers (standard profile) vs an LLM-router baseline."""
        quiet_logs()
        from orchestrator.bench.voice import Profile, run_voice_bench
        from orchestrator.telemetry.setup import setup_telemetry

        settings = _settings()
        # Turns are traced as in a worker (our spans and livekit-agents' own), exported only if
        # OTEL_EXPORTER_OTLP_ENDPOINT is set: tracing is part of what a turn costs.
        telemetry = setup_telemetry(settings)
        try:
            out = asyncio.run(
                run_voice_bench(
                    settings,
                    calls=calls,
                    levels=[int(x) for x in levels.split(",") if x],
                    embedded=embedded,
                    profile=Profile(endpointing_s=endpointing_ms / 1000),
                    tracer=telemetry.tracer,
                    on_progress=None if as_json else lambda what: typer.echo(f"measuring {what}…", err=True),
                )
            )
        finally:
            telemetry.shutdown()
        typer.echo(json.dumps(out, indent=2 if as_json else None))

    app.add_typer(tts_app, name="tts")
    app.add_typer(bench_app, name="bench")
