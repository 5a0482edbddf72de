"""Specialists as LLM tool-calling agents (when a model is configured), over the same tools as the flows."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from agents.context import AgentContext
from agents.specialists.base import failed_verification, verification_progressed, verify
from agents.speech import for_the_ear
from agents.state import CallState, new_verification, verification_of
from agents.supervisor import CORRECTIONS, reply_breach
from agents.tools import CallerTools

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
HISTORY_TURNS = 20


def needs_verification(agent: str) -> bool:
    return agent in {"scheduling", "billing"}


async def run_llm_specialist(
    agent: str, ctx: AgentContext, state: CallState, write: Callable[[str], None]
) -> dict[str, Any]:
    """One turn of an LLM specialist: verify first (deterministically), then let the model use the tools.

    Speakable text is written sentence by sentence as it streams, each sentence checked by the
    supervisor's guard first, so a policy breach is never spoken.
    """
    assert ctx.models is not None
    update: dict[str, Any] = {"handoff_to": None}
    if needs_verification(agent):
        verification, prompt = await verify(ctx, state, state.get("utterance", ""))
        update["verification"] = verification
        if verification["status"] == "failed":
            return {**update, "escalate_for": failed_verification(verification)}
        if prompt is not None:
            progressed = verification_progressed(state.get("verification") or new_verification(), verification)
            failures = 0 if progressed else state.get("failures", 0) + 1
            return {**update, "reply": prompt, "failures": failures}
        state = CallState(**{**state, "verification": verification})

    tools = CallerTools(ctx, state, agent)
    llm_tools = tools.for_llm(agent)
    by_name = {t.name: t for t in llm_tools}
    model = ctx.models.model_for(agent, state.get("confidence", 1.0), state.get("failures", 0))
    bound = model.bind_tools(llm_tools) if llm_tools else model
    messages = _messages(ctx, state, agent)
    policy_max = ctx.tenant.billing.refund_policy().max_cents
    spoken: list[str] = []
    corrected = False

    def say(sentence: str) -> None:
        nonlocal corrected
        sentence = sentence.strip()
        if not sentence:
            return
        granted = any(e["name"] == "request_refund" and e["ok"] for e in tools.events)
        breach = reply_breach(sentence, max_refund_cents=policy_max, refund_granted=granted)
        if breach:
            corrected = True
            sentence = ctx.prompts.reply(CORRECTIONS[breach])
        sentence = for_the_ear(sentence)
        spoken.append(sentence)
        write(sentence + " ")

    for _ in range(ctx.max_llm_tool_rounds):
        buffer = ""
        full: AIMessageChunk | None = None
        async for chunk in bound.astream(messages):
            if not isinstance(chunk, AIMessageChunk):
                continue
            full = chunk if full is None else full + chunk
            if isinstance(chunk.content, str) and chunk.content:
                buffer += chunk.content
                *done, buffer = _SENTENCE_END.split(buffer)
                for sentence in done:
                    say(sentence)
        say(buffer)
        if full is None or not full.tool_calls:
            break
        messages.append(AIMessage(content=full.content, tool_calls=full.tool_calls))
        for call in full.tool_calls:
            tool = by_name.get(call["name"])
            result = await tool.ainvoke(call["args"]) if tool else f"error: no tool named {call['name']}"
            messages.append(ToolMessage(content=str(result), tool_call_id=call.get("id") or call["name"]))
    reply = " ".join(spoken).strip() or ctx.prompts.reply("common.reprompt")
    if not spoken:
        write(reply)
    update.update(reply=reply, spoken=True, tool_events=tools.events, failures=0)
    if state.get("guidance"):
        update["guidance"] = None  # a whisper steers the next reply, once
    if corrected:
        update["interventions"] = [
            {"turn": state.get("turn", 0), "kind": "correct_reply", "reason": "guard", "detail": ""}
        ]
    if any(
        e["ok"] and e["name"] not in {"open_slots", "list_appointments", "list_invoices", "search_articles"}
        for e in tools.events
    ):
        update["resolutions"] = [f"{agent}:llm"]
    return update


def _messages(ctx: AgentContext, state: CallState, agent: str) -> list[BaseMessage]:
    v = verification_of(state)
    facts = [f"Today is {ctx.now().strftime('%A %Y-%m-%d %H:%M')} ({ctx.timezone})."]
    if v.get("status") == "verified":
        facts.append(f"The caller is verified as {v.get('name')}. Tools act on their account only.")
    guidance = state.get("guidance")
    if guidance:
        facts.append(f"A human supervisor says: {guidance}")
    system = ctx.prompts.system(agent) + "\n\n" + "\n".join(facts)
    history: list[BaseMessage] = [SystemMessage(system)]
    for turn in state.get("transcript", [])[-HISTORY_TURNS:]:
        if turn["role"] == "caller":
            history.append(HumanMessage(turn["text"]))
        elif turn["text"]:  # a reply cut off before the caller heard a word of it was never said
            history.append(AIMessage(turn["text"]))
    if not history or not isinstance(history[-1], HumanMessage):
        history.append(HumanMessage(state.get("utterance", "")))
    return history
