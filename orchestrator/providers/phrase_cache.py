"""Phrase cache: common sentences pre-rendered per voice, in Redis (shared) and an in-process LRU, as a TTS wrapper."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from livekit import rtc
from livekit.agents import tokenize, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

from orchestrator.redis_client import open_redis

__all__ = [
    "CachedTTS",
    "CacheStats",
    "LookupResult",
    "PhraseCache",
    "SynthesisRecord",
    "normalize",
    "phrase_key",
    "phrase_sentences",
    "split_sentences",
    "tts_identity",
]

log = logging.getLogger(__name__)

# Bump when the stored layout changes; it is part of every key, like the settings' version stamp.
_FORMAT = 1
_HEADER = struct.Struct("<IH")  # sample rate, channels


def normalize(text: str) -> str:
    """The cache's view of a sentence: whitespace collapsed. Case and punctuation stay (they change prosody)."""
    return " ".join(text.split())


def tts_identity(engine: tts.TTS[Any]) -> dict[str, Any]:
    """What changes the rendered audio of `engine`: provider, model, voice, sample rate and settings."""
    identity = getattr(engine, "cache_identity", None)
    if callable(identity):
        return dict(identity())
    return {"provider": engine.provider, "model": engine.model, "sample_rate": engine.sample_rate}


def phrase_key(identity: Mapping[str, Any], text: str, version: str) -> str:
    """The cache key: a hash of the TTS identity, the normalised text, the version stamp and the format."""
    blob = json.dumps(
        {"id": dict(identity), "text": normalize(text), "v": version, "f": _FORMAT}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()


async def split_sentences(text: str) -> list[str]:
    """Split `text` the way the session's TTS stream adapter does, so cached units match spoken units."""
    stream = tokenize.blingfire.SentenceTokenizer(retain_format=True).stream()
    stream.push_text(text)
    stream.end_input()
    out = [normalize(ev.token) for ev in [ev async for ev in stream]]
    await stream.aclose()
    return [s for s in out if s]


async def phrase_sentences(phrases: list[str]) -> list[str]:
    """The phrase list as the sentences the session will actually ask the TTS for."""
    out: list[str] = []
    for phrase in phrases:
        out.extend(await split_sentences(phrase))
    return list(dict.fromkeys(out))


# What happened to one spoken sentence: played from the cache, synthesised (a phrase not cached yet), or
# synthesised without asking the cache (not in the phrase set).
LookupResult = Literal["hit", "miss", "bypass"]


@dataclass
class CacheStats:
    """Hit-rate counters. `hit_rate` is the share of spoken sentences served with no TTS call.

    The cache is the only place these are counted: `hits`/`misses` by `PhraseCache.get`, `bypass` by
    `PhraseCache.bypass`; listeners (the telemetry's counter) see each count as it happens.
    """

    hits: int = 0
    local_hits: int = 0
    misses: int = 0
    bypass: int = 0
    stores: int = 0
    errors: int = 0

    @property
    def lookups(self) -> int:
        return self.hits + self.misses + self.bypass

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def public(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "local_hits": self.local_hits,
            "misses": self.misses,
            "bypass": self.bypass,
            "stores": self.stores,
            "errors": self.errors,
            "hit_rate": round(self.hit_rate, 4),
        }


class PhraseCache:
    """Two tiers: an in-process LRU in front of Redis (shared by every worker).

    Redis failures never fail a turn: they count as misses and the sentence is synthesised.

    Args:
        redis: a redis-py asyncio client (REDIS_URL or the embedded Redis); None keeps the cache local.
        local_entries: LRU size (0 disables the local tier).
        ttl_s: Redis expiry (0 keeps entries until evicted).
        version: the settings' version stamp; changing it invalidates every entry.
        prefix: Redis key prefix.
    """

    @staticmethod
    def connect(url: str, *, timeout_s: float = 0.5) -> Any:
        """A redis-py asyncio client tuned for a cache: short timeouts, no retries (a miss is cheap), audio as bytes."""
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        return open_redis(
            url,
            decode_responses=False,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    def __init__(
        self,
        *,
        redis: Any | None = None,
        local_entries: int = 256,
        ttl_s: int = 7 * 24 * 3600,
        version: str = "1",
        prefix: str = "switchboard:tts:",
    ) -> None:
        self.redis = redis
        self.local_entries = local_entries
        self.ttl_s = ttl_s
        self.version = version
        self.prefix = prefix
        self.stats = CacheStats()
        self._listeners: list[Callable[[LookupResult], None]] = []
        self._local: OrderedDict[str, bytes] = OrderedDict()
        # After a Redis error the shared tier is skipped for a while: an outage must not add a
        # connect timeout to every sentence of every call.
        self.breaker_s = 5.0
        self._redis_down_until = 0.0

    def _redis_usable(self) -> bool:
        return self.redis is not None and time.monotonic() >= self._redis_down_until

    def _redis_failed(self, op: str, exc: Exception) -> None:
        self.stats.errors += 1
        self._redis_down_until = time.monotonic() + self.breaker_s
        log.warning("phrase cache: redis %s failed (%s); local tier only for %.0f s", op, exc, self.breaker_s)

    def on_lookup(self, listener: Callable[[LookupResult], None]) -> None:
        """Call `listener` with each sentence's result as it is counted (metrics read the cache's own count)."""
        self._listeners.append(listener)

    def _count(self, result: LookupResult) -> None:
        if result == "hit":
            self.stats.hits += 1
        elif result == "miss":
            self.stats.misses += 1
        else:
            self.stats.bypass += 1
        for listener in self._listeners:
            try:
                listener(result)
            except Exception:  # a metrics failure must never cost a turn its audio
                log.debug("phrase cache listener failed", exc_info=True)

    def bypass(self) -> None:
        """Count a sentence spoken without a lookup (outside the phrase set)."""
        self._count("bypass")

    def key(self, identity: Mapping[str, Any], text: str) -> str:
        return f"{self.prefix}{self.version}:{phrase_key(identity, text, self.version)}"

    def _remember(self, key: str, blob: bytes) -> None:
        if self.local_entries <= 0:
            return
        self._local[key] = blob
        self._local.move_to_end(key)
        while len(self._local) > self.local_entries:
            self._local.popitem(last=False)

    async def get(self, identity: Mapping[str, Any], text: str) -> rtc.AudioFrame | None:
        """The cached rendering of `text` for this voice, or None; counted as a hit or a miss."""
        frame = await self._lookup(self.key(identity, text))
        self._count("miss" if frame is None else "hit")
        return frame

    async def _lookup(self, key: str) -> rtc.AudioFrame | None:
        blob = self._local.get(key)
        if blob is not None:
            self._local.move_to_end(key)
            self.stats.local_hits += 1
            return _decode(blob)
        if self.redis is None or not self._redis_usable():
            return None
        try:
            blob = await self.redis.get(key)
        except Exception as exc:  # a cache outage must cost a synthesis, never the turn
            self._redis_failed("get", exc)
            return None
        if blob is None:
            return None
        self._remember(key, blob)
        return _decode(blob)

    async def put(self, identity: Mapping[str, Any], text: str, frame: rtc.AudioFrame) -> None:
        """Store a rendering of `text` in both tiers."""
        key = self.key(identity, text)
        blob = _HEADER.pack(frame.sample_rate, frame.num_channels) + bytes(frame.data.cast("B"))
        self._remember(key, blob)
        self.stats.stores += 1
        if self.redis is None or not self._redis_usable():
            return
        try:
            if self.ttl_s:
                await self.redis.set(key, blob, ex=self.ttl_s)
            else:
                await self.redis.set(key, blob)
        except Exception as exc:
            self._redis_failed("set", exc)

    async def clear(self) -> int:
        """Drop every entry of this version from both tiers; returns how many Redis keys went."""
        self._local.clear()
        if self.redis is None:
            return 0
        removed = 0
        async for key in self.redis.scan_iter(match=f"{self.prefix}{self.version}:*", count=500):
            removed += int(await self.redis.delete(key))
        return removed

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None


def _decode(blob: bytes) -> rtc.AudioFrame:
    rate, channels = _HEADER.unpack_from(blob)
    pcm = blob[_HEADER.size :]
    return rtc.AudioFrame(pcm, rate, channels, len(pcm) // (2 * channels))


@dataclass
class SynthesisRecord:
    """One synthesis as the session asked for it: when it started, when its first audio came, cache or not."""

    text: str
    started: float
    first_audio: float | None = None
    cached: bool = False


@dataclass
class SynthesisJournal:
    """The latest `limit` syntheses. `added` counts all of them, so a reader marks where it started with
    `added` and reads what came since with `since`: list positions shift once the oldest are dropped."""

    records: list[SynthesisRecord] = field(default_factory=list)
    limit: int = 512
    added: int = 0

    def add(self, record: SynthesisRecord) -> None:
        self.records.append(record)
        self.added += 1
        if len(self.records) > self.limit:
            del self.records[: len(self.records) - self.limit]

    def since(self, mark: int) -> list[SynthesisRecord]:
        """The records added after `added` was `mark` (those still kept)."""
        newer = min(self.added - mark, len(self.records))
        return self.records[len(self.records) - newer :] if newer > 0 else []


class CachedTTS(tts.TTS[Any]):
    """A non-streaming TTS wrapper: a sentence in the phrase set is played from the cache with no TTS call.

    The session's stream adapter feeds it one sentence at a time, so a reply such as "Let me look that up.
    Your balance is $42." plays its first sentence from the cache and synthesises only the second.
    Phrase-set sentences that miss are synthesised once and stored (lazy warming), unless the inner stream
    reports that its audio is not the whole sentence in the inner engine's voice (see `_cache_safe`).

    Args:
        inner: the real TTS (local or cloud); its `synthesize` is used for everything not cached.
        cache: the phrase cache; None only records timings.
        phrases: sentences worth caching (see `split_sentences` and `Prompts.phrases()`); None caches every
            sentence.
        inner_conn_options: connection options (timeout, retries) for the inner TTS; a fallback chain's
            per-attempt timeout comes from here.
    """

    def __init__(
        self,
        inner: tts.TTS[Any],
        cache: PhraseCache | None,
        *,
        phrases: Iterable[str] | None = (),
        inner_conn_options: APIConnectOptions | None = None,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=inner.sample_rate,
            num_channels=inner.num_channels,
        )
        self.inner = inner
        self.cache = cache
        self.identity = tts_identity(inner)
        self.phrases: set[str] | None = None if phrases is None else {normalize(p) for p in phrases}
        self.journal = SynthesisJournal()
        self.inner_conn_options = inner_conn_options
        inner.on("metrics_collected", self._forward_metrics)

    def _forward_metrics(self, *args: Any) -> None:
        self.emit("metrics_collected", *args)

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    def cacheable(self, text: str) -> bool:
        return self.cache is not None and (self.phrases is None or normalize(text) in self.phrases)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return CachedStream(tts=self, input_text=text, conn_options=conn_options)

    async def render(self, text: str) -> tuple[rtc.AudioFrame, bool]:
        """Render one sentence (cache first); returns the audio and whether it came from the cache."""
        if self.cache is not None and self.cacheable(text):
            frame = await self.cache.get(self.identity, text)
            if frame is not None:
                return frame, True
        elif self.cache is not None:
            self.cache.bypass()
        stream = self.inner.synthesize(text)
        frame = await stream.collect()
        if self.cache is not None and self.cacheable(text) and _cache_safe(stream):
            await self.cache.put(self.identity, text, frame)
        return frame, False

    async def aclose(self) -> None:
        self.inner.off("metrics_collected", self._forward_metrics)


class CachedStream(tts.ChunkedStream):
    """One sentence's synthesis; `record` says whether it came from the cache, and when its audio did."""

    _tts: CachedTTS

    def __init__(self, *, tts: CachedTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        self.record = SynthesisRecord(text=normalize(input_text), started=time.perf_counter())
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        wrapper = self._tts
        record = self.record
        text = record.text
        wrapper.journal.add(record)
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=wrapper.sample_rate,
            num_channels=wrapper.num_channels,
            mime_type="audio/pcm",
        )
        cache = wrapper.cache
        if cache is not None and wrapper.cacheable(text):
            frame = await cache.get(wrapper.identity, text)
            if frame is not None:
                record.cached = True
                record.first_audio = time.perf_counter()
                output_emitter.push(_at_rate(frame, wrapper.sample_rate))
                output_emitter.flush()
                return
        elif cache is not None:
            cache.bypass()
        frames: list[rtc.AudioFrame] = []
        conn_options = wrapper.inner_conn_options or self._conn_options
        async with wrapper.inner.synthesize(text, conn_options=conn_options) as stream:
            async for ev in stream:
                if record.first_audio is None:
                    record.first_audio = time.perf_counter()
                frames.append(ev.frame)
                output_emitter.push(bytes(ev.frame.data.cast("B")))
        output_emitter.flush()
        if cache is not None and frames and wrapper.cacheable(text) and _cache_safe(stream):
            # Off the critical path: the audio is already on its way to the caller.
            await asyncio.shield(cache.put(wrapper.identity, text, rtc.combine_audio_frames(frames)))


def _cache_safe(stream: tts.ChunkedStream) -> bool:
    """Whether a finished inner synthesis may be stored under the inner engine's identity.

    An engine whose audio can differ from its identity per request (a fallback chain that fell back, or one
    whose primary was cut mid-sentence: livekit ends such a request normally) says so with `cache_safe`.
    A plain engine renders every sentence whole in its own voice.
    """
    return bool(getattr(stream, "cache_safe", True))


def _at_rate(frame: rtc.AudioFrame, rate: int) -> bytes:
    if frame.sample_rate == rate:
        return bytes(frame.data.cast("B"))
    resampler = rtc.AudioResampler(input_rate=frame.sample_rate, output_rate=rate, num_channels=frame.num_channels)
    out = resampler.push(frame) + resampler.flush()
    return b"".join(bytes(f.data.cast("B")) for f in out)
