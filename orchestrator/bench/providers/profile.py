"""The stand-ins at the standard latency profile: every request answered, after the profile's delay (DESIGN.md §6).

STT final 150 ms after the end of speech, LLM first token 300 ms after the request, TTS first audio 80 ms after
it. The Deepgram stand-in hears speech by its energy and transcribes by script: the n-th utterance on a
connection is the n-th turn the benchmark's callers say.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from orchestrator.bench.providers._llm_http import Recorded
from orchestrator.bench.providers.cartesia_ws import CartesiaStandin, Speak, SynthesisRecord
from orchestrator.bench.providers.deepgram_ws import DeepgramStandin, Say, StreamRecord, _Clock, _query, _results
from orchestrator.bench.providers.openai_api import Completion, OpenAIStandin

__all__ = ["Profile", "ProfileCartesia", "ProfileDeepgram", "ProfileOpenAI", "REPLY"]

# Speech is louder than this (16-bit RMS); the line's silence and Opus's comfort noise sit far below.
SPEECH_RMS = 300.0
# An utterance is over after this much silence; its final is due `stt_final_s` after its last loud audio.
END_SILENCE_S = 0.1
REPLY = "Sure, I can help with that. Let me check your account for you now."


@dataclass(frozen=True)
class Profile:
    """The standard simulated-provider profile, in seconds."""

    stt_final_s: float = 0.150
    llm_first_token_s: float = 0.300
    tts_first_byte_s: float = 0.080


class ProfileDeepgram(DeepgramStandin):
    """Deepgram's streaming API: a final transcript (the script's next turn) ``stt_final_s`` after each utterance."""

    def __init__(self, turns: list[str], profile: Profile) -> None:
        super().__init__()
        self.turns = turns
        self.profile = profile
        self.finals = 0
        self._senders: set[asyncio.Task[None]] = set()

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        record = StreamRecord(path=request.path, query=_query(request), headers=dict(request.headers))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        rate = int(record.param("sample_rate") or 16000) * int(record.param("channels") or 1)
        clock = _Clock(bytes_per_s=2 * rate)
        request_id = str(uuid.uuid4())
        said = 0
        last_loud: float | None = None
        quiet_s = 0.0
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if json.loads(msg.data).get("type") == "CloseStream":
                        await ws.close()
                    continue
                if msg.type != WSMsgType.BINARY:
                    continue
                clock.seen += len(msg.data)
                pcm = np.frombuffer(msg.data[: len(msg.data) // 2 * 2], dtype=np.int16).astype(np.float64)
                loud = pcm.size > 0 and float(np.sqrt(np.mean(pcm**2))) >= SPEECH_RMS
                if loud:
                    last_loud, quiet_s = time.monotonic(), 0.0
                    continue
                quiet_s += pcm.size / rate
                if last_loud is not None and quiet_s >= END_SILENCE_S:
                    text = self.turns[said % len(self.turns)] if self.turns else "hello"
                    said += 1
                    task = asyncio.create_task(self._final(ws, text, request_id, clock, last_loud))
                    self._senders.add(task)
                    task.add_done_callback(self._senders.discard)
                    last_loud = None
        finally:
            self._sockets.discard(ws)
        return ws

    async def _final(
        self, ws: web.WebSocketResponse, text: str, request_id: str, clock: _Clock, spoke_until: float
    ) -> None:
        await asyncio.sleep(max(0.0, spoke_until + self.profile.stt_final_s - time.monotonic()))
        if ws.closed:
            return
        for payload in _results(Say(text, interim=False), request_id, clock, from_finalize=False):
            await ws.send_str(payload)
        self.finals += 1


class ProfileOpenAI(OpenAIStandin):
    """OpenAI's chat completions: every request answered with ``REPLY``, its first token after ``llm_first_token_s``."""

    def __init__(self, profile: Profile) -> None:
        super().__init__()
        self.profile = profile

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        # Not recorded: a benchmark sends thousands, and nothing reads them.
        await asyncio.sleep(max(0.0, started + self.profile.llm_first_token_s - time.monotonic()))
        return await self.respond(request, Completion(text=REPLY), Recorded(request.method, request.path, {}, body))


class ProfileCartesia(CartesiaStandin):
    """Cartesia's TTS: a tone as long as the text would take to say, its first audio after ``tts_first_byte_s``."""

    def __init__(self, profile: Profile) -> None:
        super().__init__()
        self.profile = profile

    def _next(self) -> Speak:
        return Speak(audio_ms=1200, chunk_ms=100)

    async def _answer_ws(
        self, request: web.Request, ws: web.WebSocketResponse, record: SynthesisRecord, context_id: str, item: Any
    ) -> bool:
        await asyncio.sleep(self.profile.tts_first_byte_s)
        self.requests.clear()  # nothing reads them; a benchmark must not grow them without end
        return await super()._answer_ws(request, ws, record, context_id, item)

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(self.profile.tts_first_byte_s)
        self.requests.clear()
        return await super()._bytes(request)
