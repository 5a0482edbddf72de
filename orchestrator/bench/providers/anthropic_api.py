"""Stand-in for Anthropic's `/v1/messages` (JSON and SSE), with payloads built from the anthropic SDK's own types.

Provenance: hand-authored against anthropic==1.17.0 types; nothing recorded from the real service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from anthropic.types import (
    InputJSONDelta,
    Message,
    MessageDeltaUsage,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
    Usage,
)
from anthropic.types.raw_message_delta_event import Delta

from orchestrator.bench.providers._llm_http import HttpError, LoopbackStandin, Recorded, stream_pieces


@dataclass(frozen=True)
class MessageReply:
    """One scripted answer, served as JSON or SSE depending on the request's `stream` flag.

    Attributes:
        text: The assistant text.
        tool_calls: `(name, input)` pairs the assistant calls (`tool_use` blocks).
        chunks: How to split `text` when streaming (default: word by word).
        usage: `(input_tokens, output_tokens)`.
        cut: `abort` drops the connection; `close` ends the body cleanly but without the closing events.
        cut_after: When streaming, stop after this many text deltas.
    """

    text: str = ""
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    chunks: tuple[str, ...] | None = None
    usage: tuple[int, int] = (21, 7)
    cut_after: int | None = None
    cut: Literal["abort", "close"] = "abort"


def _error(status: int, kind: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpError:
    return HttpError(status, {"type": "error", "error": {"type": kind, "message": message}}, headers)


def overloaded(*, retry_after_ms: int | None = None) -> HttpError:
    """Anthropic's 529 `overloaded_error`."""
    headers = (("retry-after-ms", str(retry_after_ms)),) if retry_after_ms is not None else ()
    return _error(529, "overloaded_error", "Overloaded", headers)


def rate_limited(*, retry_after_ms: int | None = None, retry_after_s: int = 1) -> HttpError:
    """Anthropic's 429 `rate_limit_error`."""
    headers = [("retry-after", str(retry_after_s))]
    if retry_after_ms is not None:
        headers.append(("retry-after-ms", str(retry_after_ms)))
    return _error(429, "rate_limit_error", "Number of requests has exceeded your rate limit", tuple(headers))


def server_error(*, retry_after_ms: int | None = None) -> HttpError:
    """Anthropic's 500 `api_error`."""
    headers = (("retry-after-ms", str(retry_after_ms)),) if retry_after_ms is not None else ()
    return _error(500, "api_error", "Internal server error", headers)


class AnthropicStandin(LoopbackStandin):
    """Serves `/v1/messages` from a FIFO of `MessageReply`s and `HttpError`s; records every request."""

    # `base_url` is the server root: the anthropic SDK appends `/v1/messages` itself.
    route = "/v1/messages"

    async def respond(self, request: web.Request, item: Any, recorded: Recorded) -> web.StreamResponse:
        assert isinstance(item, MessageReply), item
        model = str(recorded.body.get("model", "claude-haiku-4-5"))
        if recorded.body.get("stream"):
            events, cut = self._stream(item, model)
            return await self.sse(request, events, cut=cut)
        return web.json_response(self._message(item, model).model_dump(mode="json", exclude_none=True))

    @staticmethod
    def _tool_blocks(item: MessageReply) -> list[ToolUseBlock]:
        return [
            ToolUseBlock(id=f"toolu_{i:02d}_{name}", name=name, input=args, type="tool_use")
            for i, (name, args) in enumerate(item.tool_calls)
        ]

    def _message(self, item: MessageReply, model: str) -> Message:
        blocks: list[Any] = [TextBlock(text=item.text, type="text")] if item.text else []
        blocks.extend(self._tool_blocks(item))
        prompt, completion = item.usage
        return Message(
            id="msg_standin",
            type="message",
            role="assistant",
            model=model,
            content=blocks,
            stop_reason="tool_use" if item.tool_calls else "end_turn",
            stop_sequence=None,
            usage=Usage(input_tokens=prompt, output_tokens=completion),
        )

    def _stream(
        self, item: MessageReply, model: str
    ) -> tuple[list[tuple[str | None, str]], Literal["abort", "close"] | None]:
        prompt, completion = item.usage
        events: list[tuple[str | None, str]] = []

        def emit(event: Any) -> None:
            events.append((event.type, event.model_dump_json(exclude_none=True)))

        start = Message(
            id="msg_standin",
            type="message",
            role="assistant",
            model=model,
            content=[],
            stop_reason=None,
            stop_sequence=None,
            usage=Usage(input_tokens=prompt, output_tokens=1),
        )
        emit(RawMessageStartEvent(type="message_start", message=start))
        index = 0
        if item.text:
            emit(
                RawContentBlockStartEvent(
                    type="content_block_start", index=0, content_block=TextBlock(text="", type="text")
                )
            )
            pieces = list(item.chunks) if item.chunks is not None else stream_pieces(item.text)
            for n, piece in enumerate(pieces):
                if item.cut_after is not None and n >= item.cut_after:
                    return events, item.cut
                emit(
                    RawContentBlockDeltaEvent(
                        type="content_block_delta", index=0, delta=TextDelta(text=piece, type="text_delta")
                    )
                )
            emit(RawContentBlockStopEvent(type="content_block_stop", index=0))
            index = 1
        for offset, block in enumerate(self._tool_blocks(item)):
            at = index + offset
            head = ToolUseBlock(id=block.id, name=block.name, input={}, type="tool_use")
            emit(RawContentBlockStartEvent(type="content_block_start", index=at, content_block=head))
            # Tool input arrives as partial JSON that only parses once joined.
            args = json.dumps(block.input)
            half = len(args) // 2
            for fragment in (args[:half], args[half:]):
                delta = InputJSONDelta(partial_json=fragment, type="input_json_delta")
                emit(RawContentBlockDeltaEvent(type="content_block_delta", index=at, delta=delta))
            emit(RawContentBlockStopEvent(type="content_block_stop", index=at))
        if item.cut_after is not None:
            return events, item.cut
        stop = "tool_use" if item.tool_calls else "end_turn"
        emit(
            RawMessageDeltaEvent(
                type="message_delta",
                delta=Delta(stop_reason=stop, stop_sequence=None),
                # The API repeats the cumulative input count here, and langchain-anthropic reads usage
                # only from this event (not from message_start).
                usage=MessageDeltaUsage(input_tokens=prompt, output_tokens=completion),
            )
        )
        emit(RawMessageStopEvent(type="message_stop"))
        return events, None
