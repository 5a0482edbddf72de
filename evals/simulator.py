"""Simulated callers: a deterministic persona-driven one (embedded default) and an LLM-driven one (with a key)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from evals.schema import CallerProfile, Scenario, SimulatedCaller
from orchestrator.domain import DEMO_CUSTOMERS

HANGUP = "<hangup>"
CLOSING = "No, that's all. Thanks, goodbye."


@dataclass(frozen=True)
class Caller:
    """A caller profile with the demo account's phone and ZIP filled in."""

    account: str | None
    caller_id: str | None
    phone: str | None
    zip: str | None
    zip_attempts: tuple[str, ...]
    phone_attempts: tuple[str, ...]
    service_zip: str | None


def spoken_phone(e164: str) -> str:
    """+15550100001 -> "555 010 0001", the way a caller reads their number out."""
    d = e164[-10:]
    return f"{d[:3]} {d[3:6]} {d[6:]}"


def resolve_caller(profile: CallerProfile) -> Caller:
    """Fill in what the profile leaves out from the demo tenant's customer table."""
    demo = next((c for c in DEMO_CUSTOMERS if c.account_id == profile.account), None)
    phone: str | None
    if profile.account and demo is None:
        # Filler accounts NW-1009…NW-1040 follow the seed's numbering.
        number = int(profile.account[3:]) - 1000
        phone = f"+155501000{number:02d}"
        zip_code: str | None = profile.zip
    else:
        phone = demo.phone if demo else None
        zip_code = profile.zip or (demo.zip_code if demo else None)
    caller_id = None if profile.withheld else (profile.caller_id or phone)
    spoken = profile.phone or (spoken_phone(phone) if phone else None)
    return Caller(
        account=profile.account,
        caller_id=caller_id,
        phone=spoken,
        zip=zip_code,
        zip_attempts=tuple(profile.zip_attempts),
        phone_attempts=tuple(profile.phone_attempts),
        service_zip=profile.service_zip or zip_code,
    )


def _yes(flag: bool) -> str:
    return "Yes, please." if flag else "No, thank you."


@dataclass
class DeterministicCaller:
    """Answers the agent's pending question from the persona's profile; no model, same answers every run.

    The pending question is read from the call state (what the flow is waiting for), and from the
    agent's words when the state does not say (LLM specialists).
    """

    scenario: Scenario
    caller: Caller
    turns: int = 0
    _zip_asked: int = 0
    _phone_asked: int = 0
    _followups: list[str] = field(default_factory=list)
    _repeats: int = 0

    def __post_init__(self) -> None:
        assert self.scenario.simulate is not None
        self._followups = list(self.scenario.simulate.followups)

    @property
    def sim(self) -> SimulatedCaller:
        assert self.scenario.simulate is not None
        return self.scenario.simulate

    async def next(self, state: dict[str, Any], reply: str | None) -> str | None:
        """What the caller says next, or None to hang up."""
        if self.turns >= self.sim.max_turns:
            return None
        text = self._answer(state, reply)
        if text is None:
            return None
        self.turns += 1
        return text

    def _answer(self, state: dict[str, Any], reply: str | None) -> str | None:
        if reply is None:
            return self.sim.opening
        if state.get("ended") or state.get("outcome") == "escalated":
            return None
        verification = state.get("verification") or {}
        awaiting = verification.get("awaiting") or ""
        if awaiting == "phone":
            return self._phone()
        if awaiting == "zip":
            return self._zip()
        task_awaiting = (state.get("task") or {}).get("awaiting") or ""
        answer = self._task_answer(task_awaiting)
        if answer is not None:
            return answer
        return self._from_words(reply)

    def _phone(self) -> str:
        i, self._phone_asked = self._phone_asked, self._phone_asked + 1
        if i < len(self.caller.phone_attempts):
            return self.caller.phone_attempts[i]
        return self.caller.phone or "I don't know the number"

    def _zip(self) -> str:
        i, self._zip_asked = self._zip_asked, self._zip_asked + 1
        if i < len(self.caller.zip_attempts):
            return self.caller.zip_attempts[i]
        return self.caller.zip or "I don't remember"

    def _task_answer(self, awaiting: str) -> str | None:
        s = self.sim
        answers = {
            "zip": self.caller.service_zip or "I don't know",
            "slot": s.slot,
            "confirm": _yes(s.confirm),
            "which_appointment": "the first one",
            "offer_book": _yes(s.book_if_none),
            "offer_pay": _yes(s.pay_now),
            "amount": s.amount,
            "line": s.charge or s.opening,
            "offer_human": _yes(s.transfer),
            "offer_restart": _yes(s.restart),
            "step": s.step_reply,
            "fixed": "Yes, it works now." if s.fixed else "No, it still doesn't work.",
            "offer_visit": _yes(s.technician),
        }
        return answers.get(awaiting)

    def _from_words(self, reply: str) -> str | None:
        r = reply.lower()
        if "anything else" in r:
            return self._followups.pop(0) if self._followups else CLOSING
        if "goodbye" in r:
            return None
        if "phone number" in r:
            return self._phone()
        if "zip code" in r:
            return self._zip()
        if re.search(r"\b(shall i|should i|would you like|do you want)\b", r):
            return _yes(self.sim.confirm)
        if re.search(r"\bwhich\b.*\?", r):
            return self.sim.slot
        if "didn't catch" in r or "make sure i get you" in r or "another way" in r:
            # Say it once more, then give up the way a real caller would.
            self._repeats += 1
            return self.sim.opening if self._repeats <= 1 else CLOSING
        return CLOSING


def briefing(scenario: Scenario, caller: Caller) -> str:
    """The system prompt of an LLM-driven caller: the persona, the goal and the facts they know."""
    sim = scenario.simulate
    assert sim is not None
    facts = [
        f"Your phone number: {caller.phone}" if caller.phone else "You do not know your account's phone number.",
        f"Your ZIP code: {caller.zip}" if caller.zip else "You do not remember your ZIP code.",
    ]
    if caller.zip_attempts:
        facts.append("You first misremember your ZIP code as: " + ", ".join(caller.zip_attempts))
    prefs = [
        f"Preferred visit slot: {sim.slot}",
        f"Accept confirmations: {'yes' if sim.confirm else 'no'}",
        f"Pay now if asked: {'yes' if sim.pay_now else 'no'} (amount: {sim.amount})",
        f"Accept a transfer to a person: {'yes' if sim.transfer else 'no'}",
    ]
    if sim.followups:
        prefs.append("Once that is done, also ask about: " + "; ".join(sim.followups))
    return (
        "You are role-playing a caller phoning Northwind Broadband, an internet provider. Stay in character.\n"
        f"Persona: {scenario.persona}\nGoal: {scenario.goal}\n"
        + "\n".join(facts + prefs)
        + "\nSpeak in one or two short sentences, as on the phone. Answer only what you are asked. "
        f"When your goal is met or the call is transferred, reply exactly {HANGUP}."
    )


@dataclass
class LLMCaller:
    """A chat model playing the persona; used when an LLM key is configured."""

    scenario: Scenario
    caller: Caller
    model: BaseChatModel
    turns: int = 0
    history: list[BaseMessage] = field(default_factory=list)

    async def next(self, state: dict[str, Any], reply: str | None) -> str | None:
        """What the caller says next, or None to hang up."""
        sim = self.scenario.simulate
        assert sim is not None
        if reply is None:
            self.turns += 1
            self.history.append(AIMessage(sim.opening))
            return sim.opening
        if self.turns >= sim.max_turns or state.get("ended") or state.get("outcome") == "escalated":
            return None
        # Roles are swapped: the agent's words are the "human" side of the simulator's conversation.
        self.history.append(HumanMessage(reply))
        messages: Sequence[BaseMessage] = [SystemMessage(briefing(self.scenario, self.caller)), *self.history]
        answer = await self.model.ainvoke(list(messages))
        text = answer.content if isinstance(answer.content, str) else str(answer.content)
        text = text.strip()
        if not text or HANGUP in text:
            return None
        self.history.append(AIMessage(text))
        self.turns += 1
        return text
