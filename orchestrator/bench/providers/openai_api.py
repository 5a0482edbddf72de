"""Stand-in for OpenAI's `/v1/chat/completions` (JSON and SSE), with payloads built from the openai SDK's own types.

Provenance: hand-authored against openai==3.54.0 types; nothing recorded from the real service.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta, ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction
from openai.types.chat.chat_completion_message_function_tool_call import ChatCompletionMessageFunctionToolCall, Function

from orchestrator.bench.providers._llm_http import HttpError, LoopbackStandin, Recorded, stream_pieces


@dataclass(frozen=True)
class Completion:
    """One scripted answer, served as JSON or SSE depending on the request's `stream` flag.

    Attributes:
        text: The assistant text.
        tool_calls: `(name, args)` pairs the assistant calls.
        chunks: How to split `text` when streaming (default: word by word).
        usage: `(prompt_tokens, completion_tokens)`.
        cut: `abort` drops the connection; `close` ends the body cleanly but without the closing events.
        cut_after: When streaming, stop after this many content chunks.
    """

    text: str = ""
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    chunks: tuple[str, ...] | None = None
    usage: tuple[int, int] = (21, 7)
    cut_after: int | None = None
    cut: Literal["abort", "close"] = "abort"


def rate_limited(*, retry_after_ms: int | None = None, retry_after_s: int = 1) -> HttpError:
    """A 429 as OpenAI sends it; `retry_after_ms` keeps a retrying test fast."""
    headers = [("retry-after", str(retry_after_s))]
    if retry_after_ms is not None:
        headers.append(("retry-after-ms", str(retry_after_ms)))
    body = {
        "error": {
            "message": "Rate limit reached for requests",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    return HttpError(429, body, tuple(headers))


def server_error(*, retry_after_ms: int | None = None) -> HttpError:
    """A 500 as OpenAI sends it."""
    headers = (("retry-after-ms", str(retry_after_ms)),) if retry_after_ms is not None else ()
    body = {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    return HttpError(500, body, headers)


class OpenAIStandin(LoopbackStandin):
    """Serves `/v1/chat/completions` from a FIFO of `Completion`s and `HttpError`s; records every request."""

    route = "/v1/chat/completions"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def respond(self, request: web.Request, item: Any, recorded: Recorded) -> web.StreamResponse:
        assert isinstance(item, Completion), item
        model = str(recorded.body.get("model", "gpt-4o-mini"))
        if recorded.body.get("stream"):
            include_usage = bool((recorded.body.get("stream_options") or {}).get("include_usage"))
            events, cut = self._stream(item, model, include_usage)
            return await self.sse(request, events, cut=cut)
        return web.json_response(self._completion(item, model).model_dump(mode="json", exclude_none=True))

    @staticmethod
    def _tool_calls(item: Completion) -> list[tuple[str, str, str]]:
        return [(f"call_{i}_{name}", name, json.dumps(args)) for i, (name, args) in enumerate(item.tool_calls)]

    def _completion(self, item: Completion, model: str) -> ChatCompletion:
        calls = self._tool_calls(item)
        message = ChatCompletionMessage(
            role="assistant",
            content=item.text or None,
            tool_calls=[
                ChatCompletionMessageFunctionToolCall(id=cid, type="function", function=Function(name=n, arguments=a))
                for cid, n, a in calls
            ]
            or None,
        )
        prompt, completion = item.usage
        return ChatCompletion(
            id="chatcmpl-standin",
            object="chat.completion",
            created=int(time.time()),
            model=model,
            choices=[Choice(index=0, message=message, finish_reason="tool_calls" if calls else "stop")],
            usage=CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        )

    def _stream(
        self, item: Completion, model: str, include_usage: bool
    ) -> tuple[list[tuple[str | None, str]], Literal["abort", "close"] | None]:
        created = int(time.time())

        def chunk(delta: ChoiceDelta | None, finish: Any = None, usage: CompletionUsage | None = None) -> str:
            choices = [] if delta is None else [ChunkChoice(index=0, delta=delta, finish_reason=finish)]
            payload = ChatCompletionChunk(
                id="chatcmpl-standin",
                object="chat.completion.chunk",
                created=created,
                model=model,
                choices=choices,
                usage=usage,
            )
            return payload.model_dump_json(exclude_none=True)

        events: list[tuple[str | None, str]] = [(None, chunk(ChoiceDelta(role="assistant", content="")))]
        pieces = list(item.chunks) if item.chunks is not None else (stream_pieces(item.text) if item.text else [])
        for index, piece in enumerate(pieces):
            if item.cut_after is not None and index >= item.cut_after:
                return events, item.cut
            events.append((None, chunk(ChoiceDelta(content=piece))))
        calls = self._tool_calls(item)
        for index, (cid, name, args) in enumerate(calls):
            head = ChoiceDeltaToolCall(
                index=index, id=cid, type="function", function=ChoiceDeltaToolCallFunction(name=name, arguments="")
            )
            events.append((None, chunk(ChoiceDelta(tool_calls=[head]))))
            # Arguments arrive as JSON fragments that only parse once joined.
            half = len(args) // 2
            for fragment in (args[:half], args[half:]):
                part = ChoiceDeltaToolCall(index=index, function=ChoiceDeltaToolCallFunction(arguments=fragment))
                events.append((None, chunk(ChoiceDelta(tool_calls=[part]))))
        if item.cut_after is not None:
            return events, item.cut
        events.append((None, chunk(ChoiceDelta(), finish="tool_calls" if calls else "stop")))
        if include_usage:
            prompt, completion = item.usage
            usage = CompletionUsage(
                prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
            )
            events.append((None, chunk(None, usage=usage)))
        events.append((None, "[DONE]"))
        return events, None
