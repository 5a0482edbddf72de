"""The supervisor: cheap deterministic checks before and after every turn; no model call on a normal turn."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from langgraph.types import Overwrite

from agents import parsing
from agents.context import AgentContext
from agents.speech import for_the_ear, spoken_dollars_cents
from agents.state import CallState, Directive, Handoff, Intervention, ReplyCut, Turn, verification_of
from agents.triggers import reading

MAX_UTTERANCE_CHARS = 1000

_CLOSING = re.compile(
    r"^(no|nope|nothing|that'?s (all|it|everything|fine)|that is (all|it|everything)|no thanks?|no thank you|"
    r"i'?m (good|fine|all set|sorted)|we'?re (good|fine|all set|done)|all (good|set|sorted)|fine|i'?m done|bye|"
    r"goodbye|thanks?,? (bye|that'?s all)|nothing else|that'?ll (be all|do)|that will (be all|do)|"
    r"that should (be it|be all|do it)|i think that'?s (all|it|everything))\b"
    # A bare thanks ("ok, thank you", "alright thanks so much") after "anything else?" ends the call too.
    r"|^(?:(?:ok|okay|alright|all right|great|perfect|cool|oh)[ ,]+)*(?:thanks?|thank you)(?: (?:so|very) much)?$"
)
# A turn that ends in a goodbye, after nothing but thanks and acknowledgements ("ok thanks bye", "alright, thank
# you, have a good day"): the caller is leaving, whatever the agent asked. Its "ok" is no yes to that question.
_FAREWELL = re.compile(
    r"^(?:(?:ok|okay|alright|all right|great|perfect|cool|oh|well|fine|right|sure|got it|i see|no|nope|"
    r"thanks?|thank you(?: (?:so|very) much)?|cheers|that'?s (?:all|it|great|fine|everything)|"
    r"(?:that'?s|that is) all (?:i need(?:ed)?|for (?:now|today)))[ ,.!]+)*"
    r"(?:bye(?: bye| now| then)?|goodbye|good bye|have a (?:good|nice|great|lovely) (?:day|one|night|evening|weekend)|"
    r"take care|see (?:you|ya)(?: later)?|talk (?:to you )?later)(?:[ ,.!]+(?:thanks?|thank you|bye))*[ .!]*$"
)
# A plain yes to "anything else?" ("yes", "yeah, one more thing"): there is more, not yet what. Short: a longer
# turn says what ("yes, I need to book a visit" is routed, its request read by `request_after_answer`).
_MORE = re.compile(
    r"^(?:yes|yeah|yep|yup|sure|i do|one more thing|there(?:'s| is) (?:one more|something)|"
    r"i have (?:another|one more))\b"
)
_MORE_WORDS = 6
# A bare acknowledgement ("hmm okay", "alright", "I see"): after "anything else?", neither more nor goodbye.
_ACK = re.compile(
    r"(?:(?:hmm+|mm+|um+|uh+|oh|ah|well)[ ,.]*)*(?:ok|okay|alright|all right|right|i see|got it|cool|great|"
    r"understood|mm ?hmm|uh ?huh|gotcha)(?:[ ,.]+(?:ok|okay|then|thanks?|thank you))*[ .!]*"
)
_GREETING = re.compile(r"^(hi|hello|hey|good (morning|afternoon|evening))( there)?[.!]?$")
_NON_ENGLISH = re.compile(
    r"\b(hola|quiero|necesito|factura|por favor|gracias|bonjour|je|voudrais|merci|ich|bitte|rechnung|obrigado|"
    r"quero|ciao|grazie|mi|cita|tengo|problema|internet no)\b"
)
_ENGLISH = re.compile(r"\b(the|my|i|is|to|a|and|you|it|please|need|want|can|with|what)\b")
# Things the AI must never say (LLM mode can drift; flows never do).
_OFF_SCRIPT = re.compile(r"(as an ai|language model|i am an ai|openai|anthropic|system prompt|my instructions)", re.I)
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[a-z]{2,})\b")
_REFUND_PROMISE = re.compile(
    r"refund(?:ed)?[^.$]{0,40}\$\s?(\d+(?:\.\d{2})?)|\$\s?(\d+(?:\.\d{2})?)[^.]{0,40}refund", re.I
)


# Triggers that hand the call to a person on the turn they are heard; anger and abuse add up first.
_ESCALATE_AT_ONCE = frozenset({"emergency", "fraud", "legal_threat", "requested_human"})
# A caller who says the call is going round ("I already told you") is believed once the call shows it too.
_SAID_STUCK = frozenset({"loop", "repeated_failures"})
_TRIGGERS = frozenset({*_ESCALATE_AT_ONCE, *_SAID_STUCK, "anger", "abuse"})


@dataclass(frozen=True)
class Check:
    """The outcome of the pre-turn checks on what the caller said."""

    escalate: str | None = None
    directive: Directive | None = None
    frustration_delta: int = 0
    warn: bool = False
    # The trigger the caller's words carry, whether or not it escalates on this turn.
    cue: str | None = None


def check_utterance(text: str, state: CallState, learned: str | None = None) -> Check:
    """Classify the caller's words for the supervisor; pure, so it is unit-tested directly.

    `learned` is the trigger the classifier's trigger head reads in the words (`IntentPrediction.trigger`): it
    counts only where the patterns find none, and then as if they had found it.
    """
    t = parsing.normalize(text)
    if not t:
        if _non_english(text.lower()):
            return Check(directive="language")  # normalize() keeps ASCII only: another script comes out empty
        if state.get("failures", 0) >= 3:
            return Check(escalate="repeated_failures")
        return Check(directive="reprompt")
    if parsing.asks_to_repeat(text):
        # Not an answer, not a loop and no frustration: the caller did not hear the last reply.
        return Check(directive="repeat")
    agents = _replies(state.get("transcript", []))
    if agents and _question(agents[-1]) and parsing.asks_why(text):
        # "Why do you need that?", "what do you mean?": not an answer that failed, but a question about the
        # question: say why it is asked, and ask it again.
        return Check(directive="why")
    shouting = text.isupper() and len(text) > 12
    cue = reading(text) or ("anger" if shouting else None) or (learned if learned in _TRIGGERS else None)
    if cue in _ESCALATE_AT_ONCE:
        return Check(escalate=cue, cue=cue)
    callers = [x["text"] for x in state.get("transcript", []) if x["role"] == "caller"]
    if cue in _SAID_STUCK:
        # Once alone, "you already asked me that" may follow a question asked again for good reason (a ZIP
        # code that did not match): it counts as frustration, and the turn goes on to be answered.
        echoed = len(agents) >= 2 and agents[-1] == agents[-2]
        if echoed or state.get("failures", 0) >= 1 or state.get("frustration", 0) >= 1:
            return Check(escalate=cue, cue=cue)
    abusive = cue == "abuse"
    if abusive and state.get("frustration", 0) >= 1:
        return Check(escalate="abuse", cue=cue)
    angry = cue in {"anger", "abuse", *_SAID_STUCK}
    if angry and state.get("frustration", 0) + 1 >= 3:
        return Check(escalate="frustration", cue=cue)
    # A loop: the caller says the same thing a third time and the agent's answers did not move on.
    repeated = len(callers) >= 2 and all(parsing.normalize(c) == t for c in callers[-2:])
    if repeated and len(agents) >= 2 and agents[-1] == agents[-2]:
        return Check(escalate="loop", cue="loop")
    if state.get("failures", 0) >= 3:
        return Check(escalate="repeated_failures", cue="repeated_failures")
    if _non_english(t):
        return Check(directive="language", frustration_delta=int(angry), cue=cue)
    last_agent = agents[-1] if agents else ""
    asks_more = bool(parsing.request_after_answer(text))  # "no wait, what's my balance?" is no goodbye
    offered_more = any(asked in last_agent.lower() for asked in ("anything else", "what else"))
    if _CLOSING.match(t) and not asks_more and (offered_more or "goodbye" in t or "bye" in t):
        return Check(directive="close")
    if _FAREWELL.match(t):
        return Check(directive="close")
    if offered_more and not asks_more and not state.get("task") and _MORE.match(t) and len(t.split()) <= _MORE_WORDS:
        # "Yes" to "anything else?" says there is more, not what: ask for it, rather than guess a topic from it.
        return Check(directive="more")
    if offered_more and not asks_more and not state.get("task") and _ACK.fullmatch(t):
        # Asked once whether that is everything ("…, or is that everything for today?"), a second one ends it.
        return Check(directive="close" if "is that everything" in last_agent.lower() else "more_or_done")
    if _GREETING.match(t) and not state.get("task"):
        return Check(directive="greet")
    return Check(frustration_delta=int(angry), warn=abusive, cue=cue)


def cut_reply(transcript: list[Turn], cut: ReplyCut) -> list[Turn] | None:
    """The transcript with its last reply cut to what the caller heard of it, or None to leave it as it is.

    Only the newest agent line can be the cut reply, and only if no caller line follows it and its text is
    the one the session reports as said (whitespace aside): a turn whose run never saved its reply (cut off
    mid-stream in LLM mode) leaves an older reply newest, and that one the caller heard in full.
    """
    for at in range(len(transcript) - 1, -1, -1):
        line = transcript[at]
        if line["role"] == "caller":
            return None
        if line["role"] == "agent":
            if "".join(line["text"].split()) != "".join(cut["said"].split()):
                return None
            heard = Turn(role="agent", agent=line["agent"], text=cut["heard"], interrupted=True)
            return [*transcript[:at], heard, *transcript[at + 1 :]]
    return None


def _non_english(t: str) -> bool:
    letters = [c for c in t if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) / len(letters) < 0.6:
        return True
    return len(_NON_ENGLISH.findall(t)) >= 2 and len(_ENGLISH.findall(t)) == 0


async def supervise(
    ctx: AgentContext, state: CallState, learned: Callable[[], Awaitable[str | None]] | None = None
) -> dict[str, Any]:
    """Open the turn: record what the caller said, apply console overrides, run the cheap checks.

    `learned`, if given, returns the trigger head's reading of the turn; it is asked only for a turn in which
    the patterns find nothing and that goes on to be answered (the graph passes the router's classification,
    which that turn needs anyway, so the words are embedded once).
    """
    raw = state.get("utterance", "") or ""
    text = raw[:MAX_UTTERANCE_CHARS]
    turn = state.get("turn", 0) + 1
    update: dict[str, Any] = {
        "turn": turn,
        "utterance": text,
        "reply": "",
        "spoken": False,
        "directive": None,
        "escalate_for": None,
        "handoff_to": None,
        "followup": "",
        "followup_intent": "",
        "transcript": [Turn(role="caller", agent="caller", text=text)],
    }
    cut = state.get("reply_cut")
    if cut is not None:
        update["reply_cut"] = None
        corrected = cut_reply(state.get("transcript", []), cut)
        if corrected is not None:
            # The one update that changes a line already written: the reducer only appends.
            update["transcript"] = Overwrite([*corrected, *update["transcript"]])
    if not state.get("active"):
        update["active"] = "router"
    interventions: list[Intervention] = []
    override = state.get("override")
    if override:
        update["override"] = None
        kind = override.get("kind", "")
        if kind == "whisper":
            update["guidance"] = override.get("text", "")
            interventions.append(
                Intervention(turn=turn, kind="whisper", reason="supervisor", detail=override.get("text", ""))
            )
        elif kind == "reroute" and override.get("agent") in {"scheduling", "billing", "support"}:
            target = override["agent"]
            update.update(active=target, task={})
            update["handoffs"] = [
                Handoff(
                    turn=turn,
                    from_agent=state.get("active", "router"),
                    to_agent=target,
                    reason="supervisor_reroute",
                    context="",
                )
            ]
            interventions.append(Intervention(turn=turn, kind="reroute", reason="supervisor", detail=target))
        elif kind == "take_over":
            # A take-over takes the call off the AI; an accepted escalation (mode "escalation") joins a person
            # to a call the AI had already handed over. Either way a human is on the line from now on.
            update.update(active="human", ended=False, human_agent=override.get("by") or "supervisor")
            reason = "escalation" if override.get("mode") == "escalation" else "supervisor"
            interventions.append(
                Intervention(turn=turn, kind="take_over", reason=reason, detail=override.get("by", ""))
            )
        elif kind == "requeue" and state.get("active") == "human":
            # The person who accepted the escalation is gone: the caller waits for the next one, hearing hold
            # lines again rather than the silence kept while a person was on the line.
            update["human_agent"] = None
        elif kind == "escalate":
            update["escalate_for"] = "supervisor"
        elif kind == "release" and state.get("active") == "human":
            # Back to the AI: the specialist the human took the call from, else the router decides afresh.
            target = _released_to(state, override.get("agent", ""))
            update.update(active=target, task={} if target == "router" else state.get("task", {}), human_agent=None)
            update["handoffs"] = [
                Handoff(turn=turn, from_agent="human", to_agent=target, reason="supervisor_release", context="")
            ]
            # Intervention.kind has no "release" yet; a release is a reroute whose reason says so.
            interventions.append(Intervention(turn=turn, kind="reroute", reason="release", detail=target))
    if update.get("active", state.get("active")) == "human":
        # Hold lines are for a caller still waiting for a person; once one is on the line the AI says nothing.
        update["directive"] = "human" if update.get("human_agent", state.get("human_agent")) else "hold"
        update["interventions"] = interventions
        return update
    if update["escalate_for"] is None:
        check = check_utterance(text, state)
        if learned is not None and check == Check():
            trigger = await learned()
            if trigger is not None:
                check = check_utterance(text, state, trigger)
        update["frustration"] = state.get("frustration", 0) + check.frustration_delta
        if check.escalate:
            update["escalate_for"] = check.escalate
            if check.escalate not in {"repeated_failures", "loop"}:
                # The supervisor's own reading of the turn: this caller needs a person.
                update.update(intent="escalation", confidence=1.0)
            interventions.append(Intervention(turn=turn, kind="escalate", reason=check.escalate, detail=""))
        elif check.directive:
            update["directive"] = check.directive
            if check.directive == "reprompt":
                update["failures"] = state.get("failures", 0) + 1
        elif check.warn:
            interventions.append(Intervention(turn=turn, kind="warn", reason="abuse", detail=""))
    update["interventions"] = interventions
    return update


def _released_to(state: CallState, asked: str) -> str:
    """Who answers after a release: the asked specialist, else the last specialist before the human."""
    specialists = {"scheduling", "billing", "support"}
    if asked in specialists:
        return asked
    for handoff in reversed(state.get("handoffs", [])):
        for agent in (handoff["to_agent"], handoff["from_agent"]):
            if agent in specialists:
                return agent
    return "router"


def canned(ctx: AgentContext, state: CallState) -> dict[str, Any]:
    """Replies the supervisor gives itself: re-prompts, language, greetings, closing, hold, the last reply again."""
    directive = state.get("directive") or ""
    p = ctx.prompts
    if directive == "close":
        return {"reply": p.reply("common.goodbye"), "ended": True, "directive": None}
    if directive == "human":
        return {"reply": "", "directive": None}
    if directive == "why":
        return {"reply": _why(ctx, state), "directive": None}
    if directive == "repeat":
        said = _replies(state.get("transcript", []))
        # The directive stays for `speak`, which marks the line; the next turn's `supervise` clears it.
        return {"reply": said[-1] if said else p.reply("common.reprompt")}
    key = {
        "reprompt": "common.reprompt",
        "language": "common.english_only",
        "greet": "common.greet",
        "more": "common.what_else",
        "more_or_done": "common.more_or_done",
        "hold": "escalation.hold",
    }
    return {"reply": p.reply(key.get(directive, "common.reprompt")), "directive": None}


# A question a yes or no answers ("Would you like…?", "Shall I…?", "Is your internet working now?").
_YES_NO_QUESTION = re.compile(
    r"(?:would|shall|should|do|does|did|is|are|was|can|could|will|may|have|has)\b", re.IGNORECASE
)


def _question(reply: str) -> str:
    """The last question in ``reply`` ("... Would you like me to walk you through it?"), or ""."""
    asked = [part.strip() for part in re.findall(r"[^.?!]*\?", reply) if part.strip()]
    if not asked:
        return ""
    # Without the words that tied it to what came before ("First, for your security, what's...").
    question = re.sub(r"^(?:first|and|so|now|okay|ok)\b[, ]+", "", asked[-1], flags=re.IGNORECASE)
    return question[:1].upper() + question[1:]


def _why(ctx: AgentContext, state: CallState) -> str:
    """Why the last question was asked, where the call's state says (verification, an outage check), and the
    question again."""
    p = ctx.prompts
    said = _replies(state.get("transcript", []))
    question = _question(said[-1]) if said else ""
    verification = verification_of(state)
    task = state.get("task") or {}
    if verification.get("status") != "verified" and verification.get("awaiting") in ("zip", "phone"):
        reason = p.reply("verify.why")
    elif state.get("active") == "support" and task.get("awaiting") == "zip":
        reason = p.reply("support.why_zip")
    elif not _YES_NO_QUESTION.match(question) and said:
        # "Which works best for you?" means nothing without the times before it: the whole offer again, less the
        # verification that came with it.
        before, after = p.reply("verify.thanks", name="\0").split("\0")
        preface = re.compile(rf"^{re.escape(before)}.*?{re.escape(after)}\s*")
        return p.reply("common.say_again", said=preface.sub("", said[-1]))
    else:
        # Not capitalised mid-sentence, unless it starts with "I".
        lowered = question if re.match(r"I\b", question) else question[:1].lower() + question[1:]
        return p.reply("common.asking", question=lowered)
    return f"{reason} {question}"


def review(ctx: AgentContext, state: CallState) -> dict[str, Any]:
    """Close the turn: check the reply against policy, correct it if needed, and record it."""
    reply = (state.get("reply") or "").strip()
    turn = state.get("turn", 0)
    interventions: list[Intervention] = []
    update: dict[str, Any] = {}
    granted = any(e["name"] == "request_refund" and e["ok"] and e["turn"] == turn for e in state.get("tool_events", []))
    breach = reply_breach(reply, max_refund_cents=ctx.tenant.billing.refund_policy().max_cents, refund_granted=granted)
    if breach:
        interventions.append(Intervention(turn=turn, kind="correct_reply", reason=breach, detail=reply[:200]))
        reply = ctx.prompts.reply(CORRECTIONS[breach])
    reply = for_the_ear(_mask_emails(reply))
    if state.get("guidance") and ctx.models is None:
        # Flows cannot follow free text, and a whisper is never read to the caller: the console turns a
        # whisper into a flow action (or refuses it) when no model is configured, so this one is dropped.
        update["guidance"] = None
    agent_replies = [_unvaried(ctx, text) for text in _replies(state.get("transcript", []))]
    if reply and len(agent_replies) >= 2 and agent_replies[-1] == agent_replies[-2] == _unvaried(ctx, reply):
        interventions.append(Intervention(turn=turn, kind="escalate", reason="loop", detail=""))
        update["escalate_for"] = "loop"
    if not reply:
        reply = ctx.prompts.reply("common.reprompt")
    update.update(reply=reply, interventions=interventions)
    return update


def speak(ctx: AgentContext, state: CallState) -> dict[str, Any]:
    """The turn's final reply goes into the transcript (the graph streams the update's reply in the same node).

    A silent turn (a person has the call) adds no line. While the call waits for a person, the AI's lines
    (the transfer, the hold lines) are the escalation agent's, never the human's. A reply that would repeat the
    last one word for word, though the caller said something else, is varied first (`vary`).
    """
    reply = state.get("reply", "")
    if not reply:
        return {}
    line = Turn(role="agent", agent=speaker_of(state), text=reply)
    if state.get("directive") == "repeat":
        line["repeated"] = True  # word for word, as asked: neither varied nor counted by the loop checks
    elif not state.get("spoken"):
        line["text"] = reply = vary(ctx, state, reply)
    return {"reply": reply, "transcript": [line]}


def _replies(transcript: list[Turn]) -> list[str]:
    """The agent's replies, less the ones said again at the caller's request."""
    return [t["text"] for t in transcript if t["role"] == "agent" and not t.get("repeated")]


def vary(ctx: AgentContext, state: CallState, reply: str) -> str:
    """`reply`, or another wording when it would repeat the last reply word for word to different words.

    The same line again tells a caller who said something else nothing new: the router puts its offer another
    way, a caller waiting for a person hears that they are still in the queue, and a specialist that could not use
    what it heard (the turn made no progress) says so first. A caller who says the very same thing again hears the
    same answer (the loop check counts those), and the review's loop check sees through the wording (`_unvaried`).
    """
    lines = state.get("transcript", [])
    agents = _replies(lines)
    callers = [parsing.normalize(t["text"]) for t in lines if t["role"] == "caller"]
    if not agents or _unvaried(ctx, agents[-1]) != _unvaried(ctx, reply):
        return reply
    if len(callers) >= 2 and callers[-1] == callers[-2]:
        return reply
    p = ctx.prompts
    # One apology: "Sorry, I still couldn't use that." before "Sorry, I need the ZIP code" drops the second.
    still = f"{p.reply('common.still_need')} {_unvaried(ctx, reply)}"
    active = state.get("active", "router")
    if active == "human":
        candidates = [p.reply("escalation.hold_again"), p.reply("escalation.hold")]
    elif active == "router":
        candidates = [p.reply("common.rephrase"), still]
    elif state.get("failures", 0):
        candidates = [still]
    else:
        # The specialist used the caller's words and the answer is the same ("when will it be fixed?" after the
        # outage was told): said again as it is; the review's loop check still counts it.
        return reply
    return next((again for again in candidates if again != agents[-1]), reply)


def _unvaried(ctx: AgentContext, text: str) -> str:
    """A reply without the wording `vary` put on it, to compare what was said."""
    prefix = ctx.prompts.reply("common.still_need") + " "
    text = text[len(prefix) :] if text.startswith(prefix) else text
    text = re.sub(r"^(?:i'?m )?sorry, ", "", text, flags=re.IGNORECASE)
    return text[:1].upper() + text[1:]


def speaker_of(state: CallState | dict[str, Any]) -> str:
    """Who answers the caller now: the active AI agent; escalation while a person is awaited (the transfer
    and hold lines); ``human`` once a person is on the line (the AI is silent, their own lines are theirs)."""
    active = str(state.get("active", "router"))
    if active != "human":
        return active
    return "human" if state.get("human_agent") else "escalation"


# What replaces a reply (or, in LLM mode, a streamed sentence) that breaks a rule.
CORRECTIONS = {"off_script": "common.rephrase", "refund_policy": "billing.policy_correction"}


def reply_breach(text: str, *, max_refund_cents: int, refund_granted: bool) -> str | None:
    """The rule a reply breaks, if any: talk the agent must never say, or a refund promise past policy."""
    if _OFF_SCRIPT.search(text):
        return "off_script"
    promised = _refund_promise_cents(text)
    if promised is not None and promised > max_refund_cents and not refund_granted:
        return "refund_policy"
    return None


def _refund_promise_cents(reply: str) -> int | None:
    m = _REFUND_PROMISE.search(reply)
    if m:
        return round(float(m.group(1) or m.group(2)) * 100)
    # The same promise said in words ("a refund of two hundred dollars"), sentence by sentence.
    spoken = [c for s in re.split(r"(?<=[.!?])\s+", reply) if "refund" in s.lower() for c in spoken_dollars_cents(s)]
    return max(spoken) if spoken else None


def _mask_emails(reply: str) -> str:
    # Never read a full email address out; the masked form "j***@example.com" passes untouched.
    return _EMAIL.sub(lambda m: m.group(0) if "***" in m.group(0) else f"{m.group(1)}***@{m.group(2)}", reply)
