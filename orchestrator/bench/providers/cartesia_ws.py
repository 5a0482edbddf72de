"""Stand-in for Cartesia's TTS websocket (`/tts/websocket`) and `POST /tts/bytes`, replies built from SDK types.

Provenance: hand-authored against cartesia==4.2 (`cartesia.types.websocket_response`) and the client in
livekit-plugins-cartesia==1.8.9; nothing recorded from the real service.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import struct
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import WSMsgType, web
from cartesia.types.websocket_response import Chunk, Done, Error, Timestamps
from cartesia.types.word_timestamps import WordTimestamps

from orchestrator.bench.providers._loopback import WebSocketServer

__all__ = ["CartesiaStandin", "Cut", "Fail", "Speak", "Stall", "SynthesisRecord", "pcm_tone"]

_TONE_HZ = 440.0


# -- scripting: one item per synthesis (a websocket context or a bytes request), in order ------------


@dataclass(frozen=True)
class Speak:
    """Answer with `audio_ms` of PCM at the requested format, in `chunk_ms` pieces, then `done`."""

    audio_ms: int = 400
    chunk_ms: int = 100


@dataclass(frozen=True)
class Fail:
    """Answer with an error: `{"type": "error", "done": true, ...}` on the websocket, this HTTP status on bytes.

    Cartesia's websocket error carries `done: true` (the SDK's `Error.done`); `done=False` is the variant
    a client that checks `done` first would still notice.
    """

    status: int = 500
    title: str = "Internal Server Error"
    message: str = "stand-in failure"
    done: bool = True


@dataclass(frozen=True)
class Cut:
    """Send `after_chunks` audio chunks, then abort the TCP connection (a crash mid-stream)."""

    after_chunks: int = 1
    chunk_ms: int = 100


@dataclass(frozen=True)
class Stall:
    """Accept, send `after_chunks` chunks, then go quiet until the stand-in closes (a hung upstream)."""

    after_chunks: int = 0
    chunk_ms: int = 100


Item = Speak | Fail | Cut | Stall


# -- what the stand-in received --------------------------------------------------------------------


@dataclass
class SynthesisRecord:
    """One synthesis request: the websocket context's packets, or the bytes request's body."""

    transport: Literal["websocket", "bytes"]
    query: dict[str, list[str]]
    headers: dict[str, str]
    packets: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes_sent: int = 0

    @property
    def request(self) -> dict[str, Any]:
        """The first packet (model, voice, output format are repeated in every packet)."""
        return self.packets[0]

    @property
    def transcript(self) -> str:
        return "".join(str(p.get("transcript", "")) for p in self.packets)

    @property
    def context_id(self) -> str | None:
        value = self.request.get("context_id")
        return str(value) if value is not None else None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


@functools.lru_cache(maxsize=64)  # the benchmark asks for the same few lengths thousands of times
def pcm_tone(ms: int, sample_rate: int) -> bytes:
    """`ms` of a quiet 440 Hz tone as 16-bit mono PCM: audible, unlike zeros, so silence is detectable."""
    n = sample_rate * ms // 1000
    return b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * _TONE_HZ * i / sample_rate))) for i in range(n))


def _query(request: web.Request) -> dict[str, list[str]]:
    return {key: request.query.getall(key) for key in request.query}


def _rate(packet: dict[str, Any]) -> int:
    output = packet.get("output_format") or {}
    return int(output.get("sample_rate", 24000))


class CartesiaStandin(WebSocketServer):
    """Cartesia's TTS API on 127.0.0.1 (free port), scripted per synthesis, recording every request.

    Point the plugin at `base_url` (`cartesia.TTS(base_url=...)`, settings `cartesia_base_url`). A
    synthesis with no script left is answered with a 599 / error: an unscripted call is a test bug.
    """

    def __init__(self) -> None:
        super().__init__()
        self.script: deque[Item] = deque()
        self.requests: list[SynthesisRecord] = []
        self.connections: list[dict[str, Any]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/tts/websocket", self._websocket)
        app.router.add_post("/tts/bytes", self._bytes)

    # -- scripting ---------------------------------------------------------------------------

    def enqueue(self, *items: Item) -> None:
        self.script.extend(items)

    def assert_complete(self) -> None:
        assert not self.script, f"cartesia stand-in: {len(self.script)} scripted synthesis(es) unused"

    def _next(self) -> Item:
        if not self.script:
            return Fail(status=599, title="Unscripted", message="stand-in script exhausted")
        return self.script.popleft()

    # -- websocket ---------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        query, headers = _query(request), dict(request.headers)
        self.connections.append({"query": query, "headers": headers})
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        contexts: dict[str, SynthesisRecord] = {}
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                packet = json.loads(msg.data)
                context_id = str(packet.get("context_id") or uuid.uuid4())
                record = contexts.get(context_id)
                if record is None:
                    record = contexts[context_id] = SynthesisRecord("websocket", query, headers)
                    self.requests.append(record)
                record.packets.append(packet)
                if packet.get("continue", False):
                    continue
                # The context is complete: answer it as scripted. Audio is rendered for the whole
                # context at once; a real server streams as text arrives, which no test depends on.
                if not await self._answer_ws(request, ws, record, context_id, self._next()):
                    return ws
        finally:
            self._sockets.discard(ws)
        return ws

    async def _answer_ws(
        self, request: web.Request, ws: web.WebSocketResponse, record: SynthesisRecord, context_id: str, item: Item
    ) -> bool:
        """Serve one context; False when the connection is gone."""
        rate = _rate(record.request)
        if isinstance(item, Fail):
            error = Error(
                type="error",
                done=item.done,
                context_id=context_id,
                status_code=item.status,
                title=item.title,
                message=item.message,
                request_id=str(uuid.uuid4()),
            )
            await ws.send_str(json.dumps(error.model_dump(mode="json", exclude_none=True)))
            return True
        chunk_ms = item.chunk_ms
        count = item.after_chunks if not isinstance(item, Speak) else max(1, math.ceil(item.audio_ms / chunk_ms))
        total_ms = item.audio_ms if isinstance(item, Speak) else count * chunk_ms
        for i in range(count):
            pcm = pcm_tone(min(chunk_ms, total_ms - i * chunk_ms), rate)
            chunk = Chunk(
                type="chunk",
                context_id=context_id,
                data=base64.b64encode(pcm).decode(),
                done=False,
                status_code=206,
                step_time=1.0,
            )
            await ws.send_str(json.dumps(chunk.model_dump(mode="json", exclude_none=True)))
            record.audio_bytes_sent += len(pcm)
        if isinstance(item, Cut):
            transport = request.transport
            assert transport is not None
            transport.abort()
            return False
        if isinstance(item, Stall):
            await self._release.wait()
            return False
        if record.request.get("add_timestamps"):
            words = record.transcript.split()
            step = total_ms / 1000 / max(1, len(words))
            stamps = Timestamps(
                type="timestamps",
                context_id=context_id,
                done=False,
                status_code=206,
                word_timestamps=WordTimestamps(
                    words=words,
                    start=[i * step for i in range(len(words))],
                    end=[(i + 1) * step for i in range(len(words))],
                ),
            )
            await ws.send_str(json.dumps(stamps.model_dump(mode="json", exclude_none=True)))
        done = Done(type="done", done=True, context_id=context_id, status_code=200)
        await ws.send_str(json.dumps(done.model_dump(mode="json", exclude_none=True)))
        return True

    # -- bytes -------------------------------------------------------------------------------

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        record = SynthesisRecord("bytes", _query(request), dict(request.headers))
        record.packets.append(await request.json())
        self.requests.append(record)
        item = self._next()
        if isinstance(item, Fail):
            return web.json_response({"title": item.title, "message": item.message}, status=item.status)
        rate = _rate(record.request)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        if isinstance(item, Speak):
            chunks = [pcm_tone(item.chunk_ms, rate) for _ in range(item.audio_ms // item.chunk_ms)]
            remainder = item.audio_ms % item.chunk_ms
            if remainder:
                chunks.append(pcm_tone(remainder, rate))
        else:
            chunks = [pcm_tone(item.chunk_ms, rate) for _ in range(item.after_chunks)]
        for pcm in chunks:
            await response.write(pcm)
            record.audio_bytes_sent += len(pcm)
        if isinstance(item, Cut):
            # Abort before the terminating zero-length chunk: the client sees a truncated body.
            transport = request.transport
            assert transport is not None
            transport.abort()
            return response
        if isinstance(item, Stall):
            await self._release.wait()
            return response
        await response.write_eof()
        return response
