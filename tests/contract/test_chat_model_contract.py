"""One chat-model contract for ScriptedChatModel and the real OpenAI and Anthropic clients on loopback stand-ins."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import anthropic
import openai
import pytest
from langchain_core.exceptions import ModelAPIError, ModelConnectionError, ModelRateLimitError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, SecretStr

from agents.context import AgentContext
from agents.ports import INTENTS, IntentPrediction
from agents.prompts import Prompts
from agents.router import classify
from agents.testing import Reply, ScriptedChatModel, Stream, ToolCall
from orchestrator.bench.providers import anthropic_api, openai_api
from orchestrator.bench.providers.anthropic_api import AnthropicStandin, MessageReply
from orchestrator.bench.providers.openai_api import Completion, OpenAIStandin
from orchestrator.config import PROMPTS_DIR, Settings
from orchestrator.providers.llm import ModelSpec, build_chat_model

pytestmark = pytest.mark.contract

SYSTEM = "You are Northwind Broadband's billing assistant."
QUESTION = "What do I owe this month?"
ANSWER = "Your balance is 42 dollars, due on the first."
API_KEY = "sk-standin-test"


class LookupBalance(BaseModel):
    """Look up the verified caller's balance."""

    account_id: str = Field(description="The verified account id")
    include_pending: bool = False


TOOL_ARGS = {"account_id": "NW-1001", "include_pending": True}


@dataclass(frozen=True)
class Seen:
    """What one backend received for one request, in vendor-neutral terms."""

    model: str
    texts: tuple[str, ...]
    tool_names: tuple[str, ...]
    streamed: bool
    api_key: str | None


class Backend(Protocol):
    """One implementation under contract: how to build it, script it and read what it received."""

    name: str
    rate_limit_error: type[BaseException]
    server_error: type[BaseException]

    def model(self, *, model: str, max_retries: int = 0) -> BaseChatModel: ...
    def reply(self, text: str, chunks: tuple[str, ...] | None = None) -> None: ...
    def tool_call(self, name: str, args: dict[str, Any]) -> None: ...
    def rate_limited(self, *, then_retry_fast: bool = False) -> None: ...
    def failed(self, *, then_retry_fast: bool = False) -> None: ...
    def cut(self, chunks: tuple[str, ...], after: int, mode: Literal["abort", "close"]) -> None: ...
    def seen(self) -> list[Seen]: ...
    def assert_complete(self) -> None: ...


class ScriptedBackend:
    name = "scripted"
    rate_limit_error: type[BaseException] = ModelRateLimitError
    server_error: type[BaseException] = ModelAPIError

    def __init__(self) -> None:
        self._model: ScriptedChatModel | None = None
        self._pending: list[Any] = []

    def model(self, *, model: str, max_retries: int = 0) -> BaseChatModel:
        self._model = ScriptedChatModel(self._pending, model=model)
        return self._model

    def reply(self, text: str, chunks: tuple[str, ...] | None = None) -> None:
        self._pending.append(Reply(text, chunks=chunks))

    def tool_call(self, name: str, args: dict[str, Any]) -> None:
        self._pending.append(ToolCall(name, args))

    def rate_limited(self, *, then_retry_fast: bool = False) -> None:
        self._pending.append(ModelRateLimitError("rate limited"))

    def failed(self, *, then_retry_fast: bool = False) -> None:
        self._pending.append(ModelAPIError("server error"))

    def cut(self, chunks: tuple[str, ...], after: int, mode: Literal["abort", "close"]) -> None:
        self._pending.append(Stream(*chunks[:after], error=ModelConnectionError("connection dropped mid-stream")))

    def seen(self) -> list[Seen]:
        assert self._model is not None
        return [
            Seen(self._model.model, tuple(m.text for m in c.messages), c.tool_names, c.streamed, None)
            for c in self._model.calls
        ]

    def assert_complete(self) -> None:
        assert self._model is not None
        self._model.assert_complete()


class OpenAIBackend:
    name = "openai"
    rate_limit_error: type[BaseException] = openai.RateLimitError
    server_error: type[BaseException] = openai.InternalServerError

    def __init__(self, standin: OpenAIStandin) -> None:
        self.standin = standin

    def model(self, *, model: str, max_retries: int = 0) -> BaseChatModel:
        settings = Settings(
            _env_file=None, openai_api_key=SecretStr(API_KEY), openai_base_url=self.standin.base_url, llm_timeout_s=5
        )
        return build_chat_model(ModelSpec(provider="openai", model=model, max_retries=max_retries), settings)

    def reply(self, text: str, chunks: tuple[str, ...] | None = None) -> None:
        self.standin.enqueue(Completion(text=text, chunks=chunks))

    def tool_call(self, name: str, args: dict[str, Any]) -> None:
        self.standin.enqueue(Completion(tool_calls=((name, args),)))

    def rate_limited(self, *, then_retry_fast: bool = False) -> None:
        self.standin.enqueue(openai_api.rate_limited(retry_after_ms=5 if then_retry_fast else None))

    def failed(self, *, then_retry_fast: bool = False) -> None:
        self.standin.enqueue(openai_api.server_error(retry_after_ms=5 if then_retry_fast else None))

    def cut(self, chunks: tuple[str, ...], after: int, mode: Literal["abort", "close"]) -> None:
        self.standin.enqueue(Completion(text="".join(chunks), chunks=chunks, cut_after=after, cut=mode))

    def seen(self) -> list[Seen]:
        out = []
        for r in self.standin.requests:
            texts = tuple(str(m.get("content")) for m in r.body["messages"])
            tools = tuple(t["function"]["name"] for t in r.body.get("tools", []))
            auth = r.header("Authorization")
            key = auth.removeprefix("Bearer ") if auth else None
            out.append(Seen(r.body["model"], texts, tools, bool(r.body.get("stream")), key))
        return out

    def assert_complete(self) -> None:
        self.standin.assert_complete()


class AnthropicBackend:
    name = "anthropic"
    rate_limit_error: type[BaseException] = anthropic.RateLimitError
    server_error: type[BaseException] = anthropic.InternalServerError

    def __init__(self, standin: AnthropicStandin) -> None:
        self.standin = standin

    def model(self, *, model: str, max_retries: int = 0) -> BaseChatModel:
        settings = Settings(
            _env_file=None,
            anthropic_api_key=SecretStr(API_KEY),
            anthropic_base_url=self.standin.base_url,
            llm_timeout_s=5,
        )
        spec = ModelSpec(provider="anthropic", model=model, max_retries=max_retries, max_tokens=256)
        return build_chat_model(spec, settings)

    def reply(self, text: str, chunks: tuple[str, ...] | None = None) -> None:
        self.standin.enqueue(MessageReply(text=text, chunks=chunks))

    def tool_call(self, name: str, args: dict[str, Any]) -> None:
        self.standin.enqueue(MessageReply(tool_calls=((name, args),)))

    def rate_limited(self, *, then_retry_fast: bool = False) -> None:
        self.standin.enqueue(anthropic_api.rate_limited(retry_after_ms=5 if then_retry_fast else None))

    def failed(self, *, then_retry_fast: bool = False) -> None:
        self.standin.enqueue(anthropic_api.server_error(retry_after_ms=5 if then_retry_fast else None))

    def cut(self, chunks: tuple[str, ...], after: int, mode: Literal["abort", "close"]) -> None:
        self.standin.enqueue(MessageReply(text="".join(chunks), chunks=chunks, cut_after=after, cut=mode))

    def seen(self) -> list[Seen]:
        out = []
        for r in self.standin.requests:
            system = r.body.get("system")
            system_texts = (system,) if isinstance(system, str) else tuple(b["text"] for b in system or [])
            texts = system_texts + tuple(_anthropic_text(m["content"]) for m in r.body["messages"])
            tools = tuple(t["name"] for t in r.body.get("tools", []))
            out.append(Seen(r.body["model"], texts, tools, bool(r.body.get("stream")), r.header("x-api-key")))
        return out

    def assert_complete(self) -> None:
        self.standin.assert_complete()


def _anthropic_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


@pytest.fixture
async def openai_standin() -> AsyncIterator[OpenAIStandin]:
    async with OpenAIStandin() as standin:
        yield standin


@pytest.fixture
async def anthropic_standin() -> AsyncIterator[AnthropicStandin]:
    async with AnthropicStandin() as standin:
        yield standin


@pytest.fixture(params=["scripted", "openai", "anthropic"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "openai":
        return OpenAIBackend(request.getfixturevalue("openai_standin"))
    if request.param == "anthropic":
        return AnthropicBackend(request.getfixturevalue("anthropic_standin"))
    return ScriptedBackend()


MODEL_NAMES = {"scripted": "scripted-large", "openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
PROMPT = [SystemMessage(SYSTEM), HumanMessage(QUESTION)]


def _join(chunks: Sequence[BaseMessage]) -> AIMessageChunk:
    """Add streamed chunks up the way langchain aggregates them (tool-call fragments included)."""
    assert chunks, "no chunks streamed"
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    total = cast(AIMessageChunk, chunks[0])
    for chunk in chunks[1:]:
        total = total + cast(AIMessageChunk, chunk)
    return total


async def _collect_text(model: BaseChatModel, into: list[str]) -> None:
    async for chunk in model.astream(PROMPT):
        into.append(chunk.text)


# --------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------


async def test_plain_reply(backend: Backend) -> None:
    backend.reply(ANSWER)
    model = backend.model(model=MODEL_NAMES[backend.name])

    message = await model.ainvoke(PROMPT)

    assert isinstance(message, AIMessage)
    assert message.text == ANSWER
    assert message.tool_calls == []
    [seen] = backend.seen()
    assert seen.model == MODEL_NAMES[backend.name]
    assert seen.texts == (SYSTEM, QUESTION)
    assert seen.tool_names == ()
    assert seen.streamed is False
    if backend.name != "scripted":
        assert seen.api_key == API_KEY
    backend.assert_complete()


async def test_usage_metadata_on_invoke_and_stream(backend: Backend) -> None:
    backend.reply(ANSWER)
    backend.reply(ANSWER)
    model = backend.model(model=MODEL_NAMES[backend.name])

    invoked = await model.ainvoke(PROMPT)
    streamed = _join([chunk async for chunk in model.astream(PROMPT)])

    for message in (invoked, streamed):
        assert isinstance(message, AIMessage | AIMessageChunk)
        usage = message.usage_metadata
        assert usage is not None
        assert usage["input_tokens"] > 0
        assert usage["output_tokens"] > 0
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    backend.assert_complete()


async def test_streaming_yields_several_chunks_that_join_to_the_reply(backend: Backend) -> None:
    pieces = ("Your balance ", "is 42 dollars, ", "due on ", "the first.")
    backend.reply("".join(pieces), chunks=pieces)
    model = backend.model(model=MODEL_NAMES[backend.name])

    chunks = [chunk async for chunk in model.astream(PROMPT)]

    texts = [chunk.text for chunk in chunks if chunk.text]
    assert texts == list(pieces)
    assert _join(chunks).text == "".join(pieces)
    [seen] = backend.seen()
    assert seen.streamed is True
    backend.assert_complete()


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
async def test_tool_call_through_bind_tools(backend: Backend, streamed: bool) -> None:
    backend.tool_call("LookupBalance", TOOL_ARGS)
    model = backend.model(model=MODEL_NAMES[backend.name]).bind_tools([LookupBalance])

    if streamed:
        message: AIMessage = _join([chunk async for chunk in model.astream(PROMPT)])
    else:
        message = await model.ainvoke(PROMPT)

    [call] = message.tool_calls
    assert call["name"] == "LookupBalance"
    assert call["args"] == TOOL_ARGS
    assert call["id"]
    [seen] = backend.seen()
    assert seen.tool_names == ("LookupBalance",)
    backend.assert_complete()


async def test_rate_limit_raises_the_sdk_error(backend: Backend) -> None:
    backend.rate_limited()
    model = backend.model(model=MODEL_NAMES[backend.name], max_retries=0)

    with pytest.raises(ModelRateLimitError) as caught:
        await model.ainvoke(PROMPT)

    assert isinstance(caught.value, backend.rate_limit_error)
    assert len(backend.seen()) == 1
    backend.assert_complete()


async def test_server_error_raises_the_sdk_error(backend: Backend) -> None:
    backend.failed()
    model = backend.model(model=MODEL_NAMES[backend.name], max_retries=0)

    with pytest.raises(ModelAPIError) as caught:
        await model.ainvoke(PROMPT)

    assert isinstance(caught.value, backend.server_error)
    backend.assert_complete()


@pytest.mark.parametrize("fault", ["rate_limited", "failed"])
async def test_sdk_retry_recovers_from_one_fault(backend: Backend, fault: str) -> None:
    if backend.name == "scripted":
        pytest.skip("retries live in the vendor SDK; the scripted double returns what the SDK would hand back")
    getattr(backend, fault)(then_retry_fast=True)
    backend.reply(ANSWER)
    model = backend.model(model=MODEL_NAMES[backend.name], max_retries=1)

    message = await model.ainvoke(PROMPT)

    assert message.text == ANSWER
    first, second = backend.seen()
    assert first == second  # the retry resends the same request
    backend.assert_complete()


@pytest.mark.parametrize("mode", ["abort", "close"], ids=["connection-dropped", "body-ended-early"])
async def test_mid_stream_cut_raises_instead_of_truncating(backend: Backend, mode: Literal["abort", "close"]) -> None:
    # "abort" drops the socket mid-body; "close" ends the body cleanly but before the final event,
    # which both SDKs would accept as a complete (but truncated) answer without our stream guards.
    pieces = ("Your balance ", "is 42 dollars, ", "due on ", "the first.")
    backend.cut(pieces, after=2, mode=mode)
    model = backend.model(model=MODEL_NAMES[backend.name])
    received: list[str] = []

    with pytest.raises(ModelConnectionError):
        await _collect_text(model, received)

    assert "".join(received) == "".join(pieces[:2])
    backend.assert_complete()


# --------------------------------------------------------------------------------------------
# Vendor wire details the neutral contract does not see
# --------------------------------------------------------------------------------------------


async def test_openai_request_shape(openai_standin: OpenAIStandin) -> None:
    openai_standin.enqueue(Completion(tool_calls=(("LookupBalance", TOOL_ARGS),)))
    model = OpenAIBackend(openai_standin).model(model="gpt-4o", max_retries=0).bind_tools([LookupBalance])

    _join([chunk async for chunk in model.astream(PROMPT)])

    [request] = openai_standin.requests
    assert request.path == "/v1/chat/completions"
    assert request.header("Authorization") == f"Bearer {API_KEY}"
    body = request.body
    assert body["model"] == "gpt-4o"
    assert body["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    assert body["stream"] is True
    # Usage must be asked for explicitly with a custom base_url (vLLM): build_chat_model does.
    assert body["stream_options"] == {"include_usage": True}
    [tool] = body["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "LookupBalance"
    assert tool["function"]["description"] == "Look up the verified caller's balance."
    assert tool["function"]["parameters"]["required"] == ["account_id"]
    assert set(tool["function"]["parameters"]["properties"]) == {"account_id", "include_pending"}


async def test_openai_base_url_without_key_sends_a_placeholder(openai_standin: OpenAIStandin) -> None:
    # A self-hosted vLLM needs no key, but the openai SDK refuses to start without one.
    openai_standin.enqueue(Completion(text=ANSWER))
    settings = Settings(_env_file=None, openai_base_url=openai_standin.base_url)
    model = build_chat_model(ModelSpec(provider="openai", model="meta-llama/Llama-3.1-8B-Instruct"), settings)

    assert (await model.ainvoke(PROMPT)).text == ANSWER
    assert openai_standin.requests[0].header("Authorization") == "Bearer EMPTY"


async def test_anthropic_request_shape(anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(MessageReply(tool_calls=(("LookupBalance", TOOL_ARGS),)))
    model = AnthropicBackend(anthropic_standin).model(model="claude-sonnet-4-6").bind_tools([LookupBalance])

    _join([chunk async for chunk in model.astream(PROMPT)])

    [request] = anthropic_standin.requests
    assert request.path == "/v1/messages"
    assert request.header("x-api-key") == API_KEY
    assert request.header("anthropic-version")
    body = request.body
    assert body["model"] == "claude-sonnet-4-6"
    assert body["max_tokens"] == 256
    assert body["stream"] is True
    assert body["system"] in (SYSTEM, [{"type": "text", "text": SYSTEM}])
    assert body["messages"] == [{"role": "user", "content": QUESTION}]
    [tool] = body["tools"]
    assert tool["name"] == "LookupBalance"
    assert tool["description"] == "Look up the verified caller's balance."
    assert tool["input_schema"]["required"] == ["account_id"]


async def test_anthropic_overloaded_is_a_retryable_api_error(anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(anthropic_api.overloaded())
    model = AnthropicBackend(anthropic_standin).model(model="claude-haiku-4-5", max_retries=0)

    with pytest.raises(anthropic.OverloadedError) as caught:
        await model.ainvoke(PROMPT)

    assert isinstance(caught.value, ModelAPIError)
    assert caught.value.is_retryable


async def test_anthropic_overloaded_then_retry_succeeds(anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(anthropic_api.overloaded(retry_after_ms=5), MessageReply(text=ANSWER))
    model = AnthropicBackend(anthropic_standin).model(model="claude-haiku-4-5", max_retries=1)

    assert (await model.ainvoke(PROMPT)).text == ANSWER
    assert len(anthropic_standin.requests) == 2


async def test_stand_in_payloads_parse_as_sdk_types(openai_standin: OpenAIStandin) -> None:
    # The stand-ins build their replies from the pinned SDKs' types; this guards the round trip.
    openai_standin.enqueue(Completion(text=ANSWER))
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=openai_standin.base_url, max_retries=0)
    try:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        await client.close()
    assert completion.choices[0].message.content == ANSWER
    assert json.loads(completion.model_dump_json())["usage"]["total_tokens"] == 28


# --------------------------------------------------------------------------------------------
# The router's LLM fallback: a label by tool call, on every backend
# --------------------------------------------------------------------------------------------


class RouterModels:
    """A routing policy with only the router's fallback model."""

    def __init__(self, router: BaseChatModel) -> None:
        self.router = router

    def model_for(self, intent: str, confidence: float, failures: int = 0) -> BaseChatModel:
        raise AssertionError("the router's fallback needs no specialist model")

    def router_model(self) -> BaseChatModel:
        return self.router


UNSURE = IntentPrediction(intent="billing", confidence=0.3)


def _router_context(backend: Backend) -> AgentContext:
    return AgentContext(
        tenant=None,  # type: ignore[arg-type]  # the fallback never touches the tenant
        classifier=None,  # type: ignore[arg-type]  # the reading is handed in
        prompts=Prompts.load(PROMPTS_DIR),
        models=RouterModels(backend.model(model=MODEL_NAMES[backend.name])),
    )


async def test_router_fallback_takes_the_label_the_model_calls_with(backend: Backend) -> None:
    backend.tool_call("CallerIntent", {"intent": "support"})

    prediction, source = await classify(_router_context(backend), "the thing keeps dropping", UNSURE)

    assert (prediction.intent, source) == ("support", "llm")
    [seen] = backend.seen()
    assert seen.tool_names == ("CallerIntent",)
    backend.assert_complete()
    # On the wire: the label set is the tool's schema, and the model is made to call it.
    if isinstance(backend, OpenAIBackend):
        body = backend.standin.requests[0].body
        assert body["tool_choice"] == {"type": "function", "function": {"name": "CallerIntent"}}
        assert body["tools"][0]["function"]["parameters"]["properties"]["intent"]["enum"] == list(INTENTS)
    elif isinstance(backend, AnthropicBackend):
        body = backend.standin.requests[0].body
        assert body["tool_choice"] == {"type": "tool", "name": "CallerIntent"}
        assert body["tools"][0]["input_schema"]["properties"]["intent"]["enum"] == list(INTENTS)


@pytest.mark.parametrize("answer", ["prose", "label-outside-the-set"])
async def test_router_fallback_without_a_label_keeps_the_classifiers_reading(backend: Backend, answer: str) -> None:
    if answer == "prose":
        backend.reply("That sounds like support to me.")
    else:
        backend.tool_call("CallerIntent", {"intent": "refunds"})

    prediction, source = await classify(_router_context(backend), "the thing keeps dropping", UNSURE)

    assert (prediction, source) == (UNSURE, "classifier")
    backend.assert_complete()
