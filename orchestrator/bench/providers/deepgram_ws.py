"""Stand-in for Deepgram's streaming `/v1/listen` websocket and batch `POST /v1/listen`, replies built from SDK types.

Provenance: hand-authored against deepgram-sdk==7.17 (`deepgram.listen.v1.types`, `deepgram.types.ListenV1Response`)
and the client in livekit-plugins-deepgram==1.8.9; nothing recorded from the real service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from deepgram.listen.v1.types import (
    ListenV1Metadata,
    ListenV1Results,
    ListenV1ResultsChannel,
    ListenV1ResultsChannelAlternativesItem,
    ListenV1ResultsChannelAlternativesItemWordsItem,
    ListenV1ResultsMetadata,
    ListenV1ResultsMetadataModelInfo,
    ListenV1UtteranceEnd,
)
from deepgram.types import (
    ListenV1Response,
    ListenV1ResponseMetadata,
    ListenV1ResponseResults,
    ListenV1ResponseResultsChannelsItem,
    ListenV1ResponseResultsChannelsItemAlternativesItem,
    ListenV1ResponseResultsChannelsItemAlternativesItemWordsItem,
)

from orchestrator.bench.providers._loopback import WebSocketServer

__all__ = [
    "BatchError",
    "BatchRecord",
    "BatchTranscript",
    "Close",
    "DeepgramStandin",
    "Drop",
    "Hang",
    "Reject",
    "Say",
    "Stream",
    "StreamRecord",
]

_WORD_S = 0.3
_MODEL_INFO = ListenV1ResultsMetadataModelInfo(name="2-general-nova", version="2024-01-18.26916", arch="nova-3")


# -- scripting: one `Stream` (or `Reject`) per websocket connection, in order ----------------------


@dataclass(frozen=True)
class Say:
    """Send a transcript once `after_bytes` of audio arrived, or on the client's `Finalize` when None.

    Like Deepgram with `interim_results=true`, an interim `Results` comes first, then the final one;
    `speech_final` marks the endpoint and `utterance_end` adds an `UtteranceEnd` after it.
    """

    text: str
    after_bytes: int | None = 0
    confidence: float = 0.97
    interim: bool = True
    speech_final: bool = True
    utterance_end: bool = True


@dataclass(frozen=True)
class Close:
    """Close with a Deepgram close code once `after_bytes` arrived (1011 NET-0001: no audio; 1008: bad data)."""

    code: int = 1011
    reason: str = "NET-0001"
    after_bytes: int = 0


@dataclass(frozen=True)
class Drop:
    """Abort the TCP connection once `after_bytes` arrived, with no close frame (a crash or a cut link)."""

    after_bytes: int = 0


Step = Say | Close | Drop


@dataclass(frozen=True)
class Stream:
    """One accepted websocket connection and what the server does on it, in order."""

    steps: tuple[Step, ...] = ()

    @classmethod
    def of(cls, *steps: Step) -> Stream:
        return cls(tuple(steps))


@dataclass(frozen=True)
class Reject:
    """Refuse the websocket handshake with this HTTP status (401 bad key, 429, 503)."""

    status: int = 503


@dataclass(frozen=True)
class Hang:
    """Never finish the websocket handshake (until the stand-in closes): a black-holed upstream."""


@dataclass(frozen=True)
class BatchTranscript:
    """A batch answer: the transcript of the whole file."""

    text: str
    confidence: float = 0.96


@dataclass(frozen=True)
class BatchError:
    """A batch failure: HTTP status and Deepgram's error body."""

    status: int = 500
    message: str = "Internal server error"


# -- what the stand-in received --------------------------------------------------------------------


@dataclass
class StreamRecord:
    """One websocket connection as the stand-in saw it."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    audio: bytearray = field(default_factory=bytearray)
    audio_messages: int = 0
    controls: list[dict[str, Any]] = field(default_factory=list)
    rejected: int | None = None
    # Set when the server side of the connection is finished: tests wait on it, never sleep.
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def param(self, name: str) -> str | None:
        """The last value of a query parameter."""
        values = self.query.get(name)
        return values[-1] if values else None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    @property
    def control_types(self) -> list[str]:
        return [str(c.get("type")) for c in self.controls]


@dataclass(frozen=True)
class BatchRecord:
    """One batch request."""

    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


def _query(request: web.Request) -> dict[str, list[str]]:
    return {key: request.query.getall(key) for key in request.query}


class DeepgramStandin(WebSocketServer):
    """Deepgram's listen API on 127.0.0.1 (free port): streaming websocket and batch, scripted per test.

    Point the plugin at `listen_url` (`deepgram.STT(base_url=...)`, settings `deepgram_base_url`); the
    SDK's environment at `base_url`. Unscripted connections get `default` (a 503 refusal): an extra
    connection, such as the fallback adapter's recovery probe, must never be served by accident.
    """

    def __init__(self) -> None:
        super().__init__()
        self.script: deque[Stream | Reject | Hang] = deque()
        self.batch_script: deque[BatchTranscript | BatchError] = deque()
        self.default: Stream | Reject | Hang = Reject(503)
        self.streams: list[StreamRecord] = []
        self.batches: list[BatchRecord] = []

    @property
    def listen_url(self) -> str:
        return f"{self.base_url}/v1/listen"

    # -- lifecycle ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/listen", self._listen)
        app.router.add_post("/v1/listen", self._batch)

    # -- scripting ---------------------------------------------------------------------------

    def enqueue(self, *items: Stream | Reject | Hang) -> None:
        self.script.extend(items)

    def enqueue_batch(self, *items: BatchTranscript | BatchError) -> None:
        self.batch_script.extend(items)

    def assert_complete(self) -> None:
        assert not self.script, f"deepgram stand-in: {len(self.script)} scripted stream(s) unused"
        assert not self.batch_script, f"deepgram stand-in: {len(self.batch_script)} scripted batch answer(s) unused"

    # -- streaming ---------------------------------------------------------------------------

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        record = StreamRecord(path=request.path, query=_query(request), headers=dict(request.headers))
        self.streams.append(record)
        item = self.script.popleft() if self.script else self.default
        if isinstance(item, Hang):
            await self._release.wait()
            record.ended.set()
            return web.Response(status=503)
        if isinstance(item, Reject):
            record.rejected = item.status
            record.ended.set()
            return web.json_response({"err_code": "REJECTED", "err_msg": "stand-in refusal"}, status=item.status)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._serve(request, ws, record, deque(item.steps))
        finally:
            self._sockets.discard(ws)
            record.ended.set()
        return ws

    async def _serve(
        self, request: web.Request, ws: web.WebSocketResponse, record: StreamRecord, steps: deque[Step]
    ) -> None:
        rate = int(record.param("sample_rate") or 16000) * int(record.param("channels") or 1)
        request_id = str(uuid.uuid4())
        clock = _Clock(bytes_per_s=2 * rate)
        # Steps waiting for audio run as soon as enough arrived; a Say without a threshold waits for Finalize.
        if await self._run_due(request, ws, record, steps, request_id, clock, finalize=False):
            return
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                record.audio.extend(msg.data)
                record.audio_messages += 1
                clock.seen = len(record.audio)
                if await self._run_due(request, ws, record, steps, request_id, clock, finalize=False):
                    return
            elif msg.type == WSMsgType.TEXT:
                control = json.loads(msg.data)
                record.controls.append(control)
                kind = control.get("type")
                if kind == "Finalize":
                    if await self._run_due(request, ws, record, steps, request_id, clock, finalize=True):
                        return
                elif kind == "CloseStream":
                    # Deepgram answers CloseStream with a Metadata summary, then closes normally.
                    await ws.send_str(_metadata(request_id, clock.seen / clock.bytes_per_s, record))
                    await ws.close()
                    return

    async def _run_due(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        record: StreamRecord,
        steps: deque[Step],
        request_id: str,
        clock: _Clock,
        *,
        finalize: bool,
    ) -> bool:
        """Run every step that is due; True when the connection is gone."""
        while steps:
            step = steps[0]
            threshold = step.after_bytes
            if threshold is None:
                if not finalize:
                    return False
            elif len(record.audio) < threshold:
                return False
            steps.popleft()
            if isinstance(step, Say):
                for payload in _results(step, request_id, clock, from_finalize=finalize):
                    await ws.send_str(payload)
            elif isinstance(step, Close):
                await ws.close(code=step.code, message=step.reason.encode())
                return True
            else:
                transport = request.transport
                assert transport is not None
                transport.abort()
                return True
        return False

    # -- batch -------------------------------------------------------------------------------

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.batches.append(BatchRecord(query=_query(request), headers=dict(request.headers), body=body))
        if not self.batch_script:
            # Loud on purpose: an unscripted request is a test bug, not a reason to invent a transcript.
            return web.json_response({"err_code": "UNSCRIPTED", "err_msg": "stand-in script exhausted"}, status=599)
        item = self.batch_script.popleft()
        if isinstance(item, BatchError):
            body_json = {"err_code": "INTERNAL_SERVER_ERROR", "err_msg": item.message, "request_id": str(uuid.uuid4())}
            return web.json_response(body_json, status=item.status)
        return web.json_response(_batch_response(item, body, _query(request)))


@dataclass
class _Clock:
    """Where the stream is, in audio seconds: word timings are laid out from here."""

    bytes_per_s: int
    seen: int = 0
    spoken_until: float = 0.0


def _words(text: str, start: float) -> list[tuple[str, str, float, float]]:
    out = []
    for i, token in enumerate(text.split()):
        bare = token.strip(".,!?;:").lower()
        out.append((bare, token, start + i * _WORD_S, start + (i + 1) * _WORD_S))
    return out


def _results(step: Say, request_id: str, clock: _Clock, *, from_finalize: bool) -> list[str]:
    start = max(clock.spoken_until, 0.0)
    words = _words(step.text, start)
    end = words[-1][3] if words else start
    clock.spoken_until = end
    items = [
        ListenV1ResultsChannelAlternativesItemWordsItem(
            word=bare, start=w_start, end=w_end, confidence=step.confidence, punctuated_word=punctuated
        )
        for bare, punctuated, w_start, w_end in words
    ]
    metadata = ListenV1ResultsMetadata(request_id=request_id, model_info=_MODEL_INFO, model_uuid=str(uuid.uuid4()))

    def one(*, is_final: bool, speech_final: bool) -> str:
        result = ListenV1Results(
            channel_index=[0, 1],
            duration=end - start,
            start=start,
            is_final=is_final,
            speech_final=speech_final,
            from_finalize=from_finalize if is_final else None,
            channel=ListenV1ResultsChannel(
                alternatives=[
                    ListenV1ResultsChannelAlternativesItem(
                        transcript=step.text, confidence=step.confidence, words=list(items)
                    )
                ]
            ),
            metadata=metadata,
        )
        return json.dumps(result.model_dump(mode="json", exclude_none=True))

    out = []
    if step.interim:
        out.append(one(is_final=False, speech_final=False))
    out.append(one(is_final=True, speech_final=step.speech_final))
    if step.utterance_end:
        end_event = ListenV1UtteranceEnd(channel=[0, 1], last_word_end=end)
        out.append(json.dumps(end_event.model_dump(mode="json", exclude_none=True)))
    return out


def _metadata(request_id: str, duration: float, record: StreamRecord) -> str:
    event = ListenV1Metadata(
        transaction_key="deprecated",
        request_id=request_id,
        sha256=hashlib.sha256(bytes(record.audio)).hexdigest(),
        created=dt.datetime.now(dt.UTC).isoformat(),
        duration=duration,
        channels=int(record.param("channels") or 1),
    )
    return json.dumps(event.model_dump(mode="json", exclude_none=True))


def _batch_response(item: BatchTranscript, body: bytes, query: dict[str, list[str]]) -> dict[str, Any]:
    words = _words(item.text, 0.0)
    model = (query.get("model") or ["nova-3"])[-1]
    response = ListenV1Response(
        metadata=ListenV1ResponseMetadata(
            request_id=str(uuid.uuid4()),
            sha256=hashlib.sha256(body).hexdigest(),
            created=dt.datetime.now(dt.UTC),
            duration=words[-1][3] if words else 0.0,
            channels=1,
            models=[str(uuid.uuid4())],
            model_info={"id": {"name": model, "version": "2024-01-18", "arch": model}},
        ),
        results=ListenV1ResponseResults(
            channels=[
                ListenV1ResponseResultsChannelsItem(
                    alternatives=[
                        ListenV1ResponseResultsChannelsItemAlternativesItem(
                            transcript=item.text,
                            confidence=item.confidence,
                            words=[
                                ListenV1ResponseResultsChannelsItemAlternativesItemWordsItem(
                                    word=bare, start=w_start, end=w_end, confidence=item.confidence
                                )
                                for bare, _punct, w_start, w_end in words
                            ],
                        )
                    ]
                )
            ]
        ),
    )
    dumped: dict[str, Any] = response.model_dump(mode="json", exclude_none=True)
    return dumped
