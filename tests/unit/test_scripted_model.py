"""ScriptedChatModel and FunctionChatModel are strict: unused or missing steps fail the test."""

from __future__ import annotations

from typing import cast

import pytest
from langchain_core.exceptions import ModelRateLimitError
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from pydantic import BaseModel

from agents.testing import (
    ChatRequest,
    FunctionChatModel,
    Raise,
    Reply,
    ScriptedChatModel,
    ScriptExhaustedError,
    Step,
    Stream,
    ToolCall,
    ToolCalls,
)

pytestmark = pytest.mark.unit


class BookSlot(BaseModel):
    """Book a technician slot for the verified caller."""

    slot_id: str


class CancelAppointment(BaseModel):
    """Cancel one of the verified caller's appointments."""

    appointment_id: str


async def test_steps_are_served_in_order_and_recorded() -> None:
    model = ScriptedChatModel(["first", "second"])

    assert (await model.ainvoke("one")).text == "first"
    assert model.invoke("two").text == "second"

    assert [call.last_text for call in model.calls] == ["one", "two"]
    model.assert_complete()


async def test_an_unused_step_fails_assert_complete() -> None:
    model = ScriptedChatModel(["used", "never used"])
    await model.ainvoke("hi")

    with pytest.raises(AssertionError, match="1 scripted step"):
        model.assert_complete()


async def test_an_exhausted_script_raises_a_clear_error_and_fails_assert_complete() -> None:
    model = ScriptedChatModel(["only"])
    await model.ainvoke("hi")

    with pytest.raises(ScriptExhaustedError, match="request #2 but its script had 1 step"):
        await model.ainvoke("again?")
    # Even if the code under test swallowed that error, the test still fails at the end.
    with pytest.raises(AssertionError, match="after the script ran out"):
        model.assert_complete()


async def test_exhaustion_while_streaming_raises_too() -> None:
    model = ScriptedChatModel([])

    with pytest.raises(ScriptExhaustedError):
        [chunk async for chunk in model.astream("hi")]


async def test_scripted_exceptions_are_raised() -> None:
    model = ScriptedChatModel([ModelRateLimitError("slow down"), Raise(TimeoutError("late"))])

    with pytest.raises(ModelRateLimitError):
        await model.ainvoke("a")
    with pytest.raises(TimeoutError):
        await model.ainvoke("b")
    model.assert_complete()


async def test_bind_tools_records_schemas_and_shares_the_script() -> None:
    model = ScriptedChatModel([ToolCall("BookSlot", {"slot_id": "S-1"}, id="call_1"), "Booked."])
    bound = model.bind_tools([BookSlot, CancelAppointment], tool_choice="auto")

    first = await bound.ainvoke("book me in")
    second = await model.ainvoke("thanks")

    assert first.tool_calls == [{"name": "BookSlot", "args": {"slot_id": "S-1"}, "id": "call_1", "type": "tool_call"}]
    assert second.text == "Booked."
    assert model.calls[0].tool_names == ("BookSlot", "CancelAppointment")
    assert model.calls[0].tool_choice == "auto"
    assert model.calls[0].tools[0]["function"]["parameters"]["required"] == ["slot_id"]
    assert model.calls[1].tools == ()
    model.assert_complete()


async def test_a_scripted_call_to_an_unbound_tool_fails_loudly() -> None:
    model = ScriptedChatModel([ToolCall("RefundEverything", {})])

    with pytest.raises(AssertionError, match="RefundEverything"):
        await model.bind_tools([BookSlot]).ainvoke("refund")


async def test_several_tool_calls_stream_as_chunks_that_aggregate() -> None:
    model = ScriptedChatModel(
        [
            ToolCalls(
                (ToolCall("BookSlot", {"slot_id": "S-1"}), ToolCall("BookSlot", {"slot_id": "S-2"})),
                text="Booking both.",
            )
        ]
    )
    chunks = [chunk async for chunk in model.bind_tools([BookSlot]).astream("two please")]

    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    total = cast(AIMessageChunk, chunks[0])
    for chunk in chunks[1:]:
        total = total + cast(AIMessageChunk, chunk)
    assert total.text == "Booking both."
    assert [call["args"] for call in total.tool_calls] == [{"slot_id": "S-1"}, {"slot_id": "S-2"}]
    assert len({call["id"] for call in total.tool_calls}) == 2
    assert total.usage_metadata is not None
    assert model.calls[0].streamed


async def test_stream_step_yields_its_chunks_then_its_error() -> None:
    model = ScriptedChatModel([Stream("Hel", "lo", error=ConnectionResetError("cut"))])
    received: list[str] = []

    async def collect() -> None:
        async for chunk in model.astream("hi"):
            received.append(chunk.text)

    with pytest.raises(ConnectionResetError):
        await collect()

    assert received == ["Hel", "lo"]


async def test_a_cut_stream_never_returns_a_truncated_answer_through_invoke() -> None:
    model = ScriptedChatModel([Stream("Hel", "lo", error=ConnectionResetError("cut"))])

    with pytest.raises(ConnectionResetError):
        await model.ainvoke("hi")


async def test_reply_streams_word_by_word_and_joins_back() -> None:
    model = ScriptedChatModel(
        [Reply("Your technician arrives at nine.", usage={"input_tokens": 3, "output_tokens": 5, "total_tokens": 8})]
    )

    chunks = [chunk async for chunk in model.astream("when?")]

    assert len([c for c in chunks if c.text]) == 5
    assert "".join(c.text for c in chunks) == "Your technician arrives at nine."
    assert chunks[-1].usage_metadata == {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}


def test_reply_chunks_must_join_to_the_text() -> None:
    with pytest.raises(ValueError, match="join"):
        Reply("hello", chunks=("he", "y"))


def test_a_malformed_script_fails_at_construction() -> None:
    with pytest.raises(TypeError, match="not a chat-model step"):
        ScriptedChatModel([42])  # type: ignore[list-item]  # the point is a wrong type


async def test_an_ai_message_step_is_returned_as_is() -> None:
    message = AIMessage(content="verbatim", id="m-1")
    model = ScriptedChatModel([message])

    assert await model.ainvoke([HumanMessage("hi")]) is message


async def test_add_extends_the_script() -> None:
    model = ScriptedChatModel(["one"])
    model.add("two")

    await model.ainvoke("a")
    with pytest.raises(AssertionError):
        model.assert_complete()
    await model.ainvoke("b")
    model.assert_complete()


async def test_function_model_computes_the_reply_from_the_request() -> None:
    def respond(request: ChatRequest) -> Step:
        if "book" in request.last_text:
            return ToolCall("BookSlot", {"slot_id": "S-9"})
        return f"echo: {request.last_text}"

    model = FunctionChatModel(respond)
    bound = model.bind_tools([BookSlot])

    assert (await bound.ainvoke("please book")).tool_calls[0]["args"] == {"slot_id": "S-9"}
    assert (await model.ainvoke("hello")).text == "echo: hello"
    assert len(model.calls) == 2


async def test_function_model_accepts_an_async_responder() -> None:
    async def respond(request: ChatRequest) -> Step:
        return Reply(request.last_text.upper())

    model = FunctionChatModel(respond)

    assert (await model.ainvoke("quiet")).text == "QUIET"
    streamed = "".join([chunk.text async for chunk in model.astream("loud")])
    assert streamed == "LOUD"
    with pytest.raises(TypeError, match="async responder"):
        model.invoke("sync path")
