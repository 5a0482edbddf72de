"""Strict chat-model doubles (scripted and function-driven) for tests, evals and `--fake` runs."""

from __future__ import annotations

import inspect
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from uuid import uuid4

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolCallChunk, UsageMetadata
from langchain_core.messages import ToolCall as LCToolCall
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, PrivateAttr

__all__ = [
    "ChatRequest",
    "FunctionChatModel",
    "Raise",
    "Reply",
    "ScriptExhaustedError",
    "ScriptedChatModel",
    "Step",
    "Stream",
    "ToolCall",
    "ToolCalls",
]


# --------------------------------------------------------------------------------------------
# Steps: what the double answers to one request
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A plain text answer; streamed word by word unless `chunks` says how to split it.

    Attributes:
        text: The whole reply.
        chunks: Optional explicit split for streaming; must join to `text`.
        usage: Token usage to report; estimated from word counts when omitted.
    """

    text: str
    chunks: tuple[str, ...] | None = None
    usage: UsageMetadata | None = None

    def __post_init__(self) -> None:
        if self.chunks is not None and "".join(self.chunks) != self.text:
            raise ValueError("Reply.chunks must join to Reply.text")


@dataclass(frozen=True)
class Stream:
    """A streamed answer given as explicit token chunks, optionally cut by an error.

    Attributes:
        chunks: The text chunks, in order.
        error: Raised after the chunks, to imitate a connection cut mid-stream. A non-streaming
            request raises it without returning any text: a truncated answer is never returned.
        usage: Token usage to report; estimated from word counts when omitted.
    """

    chunks: tuple[str, ...]
    error: BaseException | None = None
    usage: UsageMetadata | None = None

    def __init__(self, *chunks: str, error: BaseException | None = None, usage: UsageMetadata | None = None) -> None:
        object.__setattr__(self, "chunks", tuple(chunks))
        object.__setattr__(self, "error", error)
        object.__setattr__(self, "usage", usage)


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model asks for.

    Attributes:
        name: The tool's name; with tools bound, it must be one of them.
        args: The arguments, as the model would send them.
        id: The call id; a random `call_…` id when omitted.
    """

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class ToolCalls:
    """Several tool calls in one answer, with optional text before them."""

    calls: tuple[ToolCall, ...]
    text: str = ""
    usage: UsageMetadata | None = None


@dataclass(frozen=True)
class Raise:
    """Raise `error` instead of answering (a rate limit, a server error, a timeout…)."""

    error: BaseException


Step: TypeAlias = str | Reply | Stream | ToolCall | ToolCalls | Raise | BaseException | AIMessage
"""One scripted answer. A bare `str` is a `Reply`, a bare exception a `Raise`, and an `AIMessage` is
returned as it is (streamed as one chunk)."""


@dataclass(frozen=True)
class ChatRequest:
    """One request the double received.

    Attributes:
        messages: The messages, as the model got them.
        tools: The bound tools in OpenAI function format (empty when none are bound).
        tool_choice: The bound `tool_choice`, if any.
        streamed: Whether the request came through the streaming path.
        kwargs: Any other call or binding keyword arguments (for example `stop`).
    """

    messages: tuple[BaseMessage, ...]
    tools: tuple[dict[str, Any], ...]
    tool_choice: Any
    streamed: bool
    kwargs: dict[str, Any]

    @property
    def tool_names(self) -> tuple[str, ...]:
        """The names of the bound tools."""
        return tuple(str(tool["function"]["name"]) for tool in self.tools)

    @property
    def last_text(self) -> str:
        """The text of the last message (usually the caller's latest turn)."""
        return self.messages[-1].text if self.messages else ""


class ScriptExhaustedError(AssertionError):
    """The model got a request after its script ran out: the test under-scripted or over-called."""


# --------------------------------------------------------------------------------------------
# The shared machinery
# --------------------------------------------------------------------------------------------


def _normalise(step: Step) -> Reply | Stream | ToolCalls | Raise | AIMessage:
    if isinstance(step, str):
        return Reply(step)
    if isinstance(step, BaseException):
        return Raise(step)
    if isinstance(step, ToolCall):
        return ToolCalls((step,))
    if isinstance(step, Reply | Stream | ToolCalls | Raise | AIMessage):
        return step
    raise TypeError(f"not a chat-model step: {step!r}")


def _words(text: str) -> list[str]:
    """Split text into word-sized chunks that join back to it exactly (spaces stay attached)."""
    parts: list[str] = []
    current = ""
    for char in text:
        current += char
        if char == " ":
            parts.append(current)
            current = ""
    if current:
        parts.append(current)
    return parts or [""]


def _estimate_usage(messages: Sequence[BaseMessage], output: str) -> UsageMetadata:
    # Real providers always report usage; the double does too, so cost code sees the same shape.
    prompt = sum(max(1, len(m.text.split())) for m in messages)
    completion = max(1, len(output.split()))
    return UsageMetadata(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)


def _lc_tool_calls(calls: Sequence[ToolCall]) -> list[tuple[ToolCall, str]]:
    return [(call, call.id or f"call_{uuid4().hex[:24]}") for call in calls]


class _StepChatModel(BaseChatModel):
    """Turns steps into messages and chunks, records every request, and checks tool names."""

    model: str = "scripted"
    """Reported as `response_metadata["model_name"]`, like the vendor adapters do."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _calls: list[ChatRequest] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"

    @property
    def calls(self) -> list[ChatRequest]:
        """Every request received so far, oldest first."""
        return list(self._calls)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools the way vendor adapters do: OpenAI-format schemas, passed on every request.

        Args:
            tools: Tools as dicts, pydantic models, functions or `BaseTool`s.
            tool_choice: Passed through and recorded; not enforced.
            **kwargs: Other bound keyword arguments, recorded with each request.

        Returns:
            A runnable bound to the tools; it shares this model's script and records.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # -- hooks for the two variants ----------------------------------------------------------

    def _next_step(self, request: ChatRequest) -> Step:
        raise NotImplementedError

    async def _anext_step(self, request: ChatRequest) -> Step:
        return self._next_step(request)

    # -- request recording ---------------------------------------------------------------------

    def _record(
        self, messages: list[BaseMessage], stop: list[str] | None, streamed: bool, **kwargs: Any
    ) -> ChatRequest:
        tools = tuple(kwargs.pop("tools", None) or ())
        tool_choice = kwargs.pop("tool_choice", None)
        if stop is not None:
            kwargs["stop"] = stop
        request = ChatRequest(
            messages=tuple(messages), tools=tools, tool_choice=tool_choice, streamed=streamed, kwargs=kwargs
        )
        with self._lock:
            self._calls.append(request)
        return request

    def _check_tools(self, request: ChatRequest, step: ToolCalls) -> None:
        # A scripted call to a tool the agent never bound is a test bug that a real model would
        # turn into a confusing failure much later; fail where it happens instead.
        if not request.tools:
            return
        unknown = [call.name for call in step.calls if call.name not in request.tool_names]
        if unknown:
            raise AssertionError(
                f"scripted tool call(s) {unknown} not among the bound tools {list(request.tool_names)}"
            )

    # -- building messages ---------------------------------------------------------------------

    def _metadata(self, finish: str) -> dict[str, Any]:
        return {"model_name": self.model, "finish_reason": finish, "model_provider": "scripted"}

    def _message(self, request: ChatRequest, step: Step) -> AIMessage:
        normal = _normalise(step)
        if isinstance(normal, Raise):
            raise normal.error
        if isinstance(normal, AIMessage):
            return normal
        if isinstance(normal, Stream):
            if normal.error is not None:
                raise normal.error
            normal = Reply("".join(normal.chunks), usage=normal.usage)
        if isinstance(normal, Reply):
            return AIMessage(
                content=normal.text,
                usage_metadata=normal.usage or _estimate_usage(request.messages, normal.text),
                response_metadata=self._metadata("stop"),
                id=f"scripted-{uuid4().hex[:12]}",
            )
        self._check_tools(request, normal)
        calls = [
            LCToolCall(name=call.name, args=dict(call.args), id=call_id, type="tool_call")
            for call, call_id in _lc_tool_calls(normal.calls)
        ]
        rendered = normal.text + "".join(json.dumps(call.args) for call in normal.calls)
        return AIMessage(
            content=normal.text,
            tool_calls=calls,
            usage_metadata=normal.usage or _estimate_usage(request.messages, rendered),
            response_metadata=self._metadata("tool_calls"),
            id=f"scripted-{uuid4().hex[:12]}",
        )

    def _chunks(self, request: ChatRequest, step: Step) -> Iterator[AIMessageChunk]:
        normal = _normalise(step)
        if isinstance(normal, Raise):
            raise normal.error
        message_id = f"scripted-{uuid4().hex[:12]}"
        if isinstance(normal, AIMessage):
            yield AIMessageChunk(
                content=normal.content,
                tool_call_chunks=[
                    ToolCallChunk(name=tc["name"], args=json.dumps(tc["args"]), id=tc["id"], index=i)
                    for i, tc in enumerate(normal.tool_calls)
                ],
                usage_metadata=normal.usage_metadata,
                response_metadata=dict(normal.response_metadata),
                id=normal.id or message_id,
                chunk_position="last",
            )
            return
        if isinstance(normal, Reply | Stream):
            texts = list(normal.chunks) if normal.chunks is not None else _words(normal.text)
            for text in texts:
                yield AIMessageChunk(content=text, id=message_id)
            if isinstance(normal, Stream) and normal.error is not None:
                raise normal.error
            full = "".join(texts)
            yield AIMessageChunk(
                content="",
                usage_metadata=normal.usage or _estimate_usage(request.messages, full),
                response_metadata=self._metadata("stop"),
                id=message_id,
                chunk_position="last",
            )
            return
        self._check_tools(request, normal)
        for text in _words(normal.text) if normal.text else []:
            yield AIMessageChunk(content=text, id=message_id)
        for index, (call, call_id) in enumerate(_lc_tool_calls(normal.calls)):
            # Vendors stream the name and id first, then the JSON arguments in pieces.
            args = json.dumps(call.args)
            half = len(args) // 2
            yield AIMessageChunk(
                content="",
                tool_call_chunks=[ToolCallChunk(name=call.name, args=args[:half], id=call_id, index=index)],
                id=message_id,
            )
            yield AIMessageChunk(
                content="",
                tool_call_chunks=[ToolCallChunk(name=None, args=args[half:], id=None, index=index)],
                id=message_id,
            )
        rendered = normal.text + "".join(json.dumps(call.args) for call in normal.calls)
        yield AIMessageChunk(
            content="",
            usage_metadata=normal.usage or _estimate_usage(request.messages, rendered),
            response_metadata=self._metadata("tool_calls"),
            id=message_id,
            chunk_position="last",
        )

    # -- BaseChatModel hooks -------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._record(messages, stop, False, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=self._message(request, self._next_step(request)))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._record(messages, stop, False, **kwargs)
        step = await self._anext_step(request)
        return ChatResult(generations=[ChatGeneration(message=self._message(request, step))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = self._record(messages, stop, True, **kwargs)
        for chunk in self._chunks(request, self._next_step(request)):
            generation = ChatGenerationChunk(message=chunk)
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=generation)
            yield generation

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = self._record(messages, stop, True, **kwargs)
        step = await self._anext_step(request)
        for chunk in self._chunks(request, step):
            generation = ChatGenerationChunk(message=chunk)
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=generation)
            yield generation


# --------------------------------------------------------------------------------------------
# The two public doubles
# --------------------------------------------------------------------------------------------


class ScriptedChatModel(_StepChatModel):
    """A strict chat model that answers with scripted steps, first in, first out.

    Each request (invoke, stream, or through `bind_tools`) takes the next step. A request after the
    script ran out raises `ScriptExhaustedError`, and `assert_complete()` fails when a step went
    unused or the script was overrun, so a test cannot pass by accident.

    Example:
        model = ScriptedChatModel(steps=[ToolCall("lookup_balance", {}), "You owe $42."])
        ...
        model.assert_complete()

    Attributes:
        steps: The script, as given (the remaining steps are in `remaining`).
    """

    steps: list[Any]
    """The script: each item a `Step` (annotated `Any` because exceptions are not pydantic types)."""

    _queue: deque[Step] = PrivateAttr()
    _overrun: int = PrivateAttr(default=0)

    def __init__(self, steps: Sequence[Step] = (), **kwargs: Any) -> None:
        """Build the model from its script.

        Args:
            steps: The answers, in order.
            **kwargs: Other `BaseChatModel` fields (for example `model`).
        """
        for step in steps:
            _normalise(step)  # a malformed script fails at construction, not mid-test
        super().__init__(steps=list(steps), **kwargs)
        self._queue = deque(steps)

    @property
    def remaining(self) -> list[Step]:
        """Steps not used yet."""
        return list(self._queue)

    def add(self, *steps: Step) -> None:
        """Append steps to the script (for tests that script as they go)."""
        for step in steps:
            _normalise(step)
        with self._lock:
            self._queue.extend(steps)
            self.steps.extend(steps)

    def _next_step(self, request: ChatRequest) -> Step:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            self._overrun += 1
            used = len(self._calls) - self._overrun
        raise ScriptExhaustedError(
            f"ScriptedChatModel got request #{len(self._calls)} but its script had {used} step(s); "
            f"last message: {request.last_text[:120]!r}"
        )

    def assert_complete(self) -> None:
        """Fail unless every step was used and no request came after the script ran out.

        Raises:
            AssertionError: Naming the unused steps or the number of extra requests.
        """
        if self._queue:
            raise AssertionError(
                f"ScriptedChatModel: {len(self._queue)} scripted step(s) unused: {list(self._queue)!r}"
            )
        if self._overrun:
            raise AssertionError(f"ScriptedChatModel: {self._overrun} request(s) arrived after the script ran out")


Responder: TypeAlias = Callable[[ChatRequest], Step | Awaitable[Step]]


class FunctionChatModel(_StepChatModel):
    """A chat model whose answer is computed from the request by a function (sync or async).

    Use it when the reply depends on the input (an eval's simulated specialist, a `--fake` run).
    The function gets a `ChatRequest` and returns any `Step`.

    Example:
        model = FunctionChatModel(lambda req: f"You said {req.last_text}")
    """

    function: Any
    """The responder: `Callable[[ChatRequest], Step | Awaitable[Step]]`."""

    def __init__(self, function: Responder, **kwargs: Any) -> None:
        """Build the model around its responder.

        Args:
            function: Computes the step for each request.
            **kwargs: Other `BaseChatModel` fields (for example `model`).
        """
        super().__init__(function=function, **kwargs)

    def _next_step(self, request: ChatRequest) -> Step:
        result = self.function(request)
        if inspect.isawaitable(result):
            # An async responder cannot be awaited on the sync path; close it to avoid a warning.
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise TypeError("FunctionChatModel: an async responder needs ainvoke/astream")
        return result  # type: ignore[no-any-return]  # the responder is typed through Responder

    async def _anext_step(self, request: ChatRequest) -> Step:
        result = self.function(request)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]  # the responder is typed through Responder
