"""The router: reads the caller's intent with the local classifier and hands the call to a specialist."""

from __future__ import annotations

import re
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.output_parsers.openai_tools import PydanticToolsParser
from pydantic import BaseModel, Field

from agents import parsing
from agents.context import AgentContext
from agents.ports import Intent, IntentPrediction
from agents.state import CallState, Handoff, Task, verification_of
from agents.supervisor import MAX_UTTERANCE_CHARS
from agents.triggers import reading

ROUTABLE = ("scheduling", "billing", "support")
# A reply this short, to a specialist's open question, belongs to the running task ("done", "the line").
SHORT_ANSWER_WORDS = 4

# Openings with no topic in them ("Hi, can you help me?", "Hello, is this Northwind?"): a closed grammar, so a
# caller who names a topic ("hi, it's about my bill") is never taken for one. The classifier reads some of
# these as support and most as out of scope, and neither a ZIP-code question nor a refusal answers them.
_GREET = (
    r"(?:hi|hello|hey|hiya|howdy|yes|yeah|yep|oh|um|uh|erm|ok|okay|right|so|good (?:morning|afternoon|evening|day)|"
    r"morning|afternoon|evening|there|northwind(?: broadband)?|thanks?(?: you)?|please)"
)
_ASIDE = (
    r"(?:is (?:this|that) northwind(?: broadband)?|(?:how are|how're) you(?: doing)?(?: today)?|"
    r"how(?:'s| is) it going(?: today)?|how are things|what's up|"
    r"i hope you(?:'re| are) (?:well|ok|okay|doing well)|(?:are you|is anyone|anyone|anybody|is anybody) there|"
    r"can you hear me)"
)
_ASK = (
    r"(?:(?:can|could|would) you (?:please )?help(?: me)?(?: out)?|i (?:hope|wonder if) you can help(?: me)?|"
    r"i(?:'m| am) hoping you can help(?: me)?|i need (?:some |a little )?(?:help|assistance)|"
    r"i(?:'d| would) like (?:some )?(?:help|assistance)|(?:please )?help(?: me)?|"
    r"i have (?:a|one|a few|some) (?:quick )?questions?|(?:can|could|may) i ask (?:you )?(?:something|a question))"
)
_OPENING = re.compile(rf"(?:(?:{_GREET}|{_ASIDE}|{_ASK})\s*)+")
_OPENS = re.compile(rf"\b(?:hi|hello|hey|hiya|howdy|morning|afternoon|evening|good day)\b|^{_ASK}|\s{_ASK}")
_URGENT = re.compile(
    rf"(?:{_GREET}\s+)*(?:(?:it's|it is|this is|that's)\s+)?(?:(?:very|really|quite|extremely)\s+)?"
    r"(?:urgent|an urgent (?:matter|call|question|problem))(?:\s+please)?|"
    rf"(?:{_GREET}\s+)*(?:please\s+)?(?:i need |can you |could you )?(?:help(?: me)?|someone|somebody|assistance)"
    r"(?:\s+please)?\s+(?:right now|now|urgently|immediately|asap|quickly|right away|fast)(?:\s+please)?"
)


# The words of the router's question "a technician visit, your bill, or a problem with your service?" and what
# callers answer it with; a reply naming one family only is that family's.
_MENU_WORDS = {
    "scheduling": ("technician", "visit", "appointment", "engineer", "reschedule", "book"),
    "billing": (
        "bill",
        "billing",
        "charge",
        "payment",
        "invoice",
        "refund",
        "balance",
        "pay",
        "autopay",
        "auto pay",
        "plan",
    ),
    "support": ("service", "internet", "wifi", "wi-fi", "connection", "outage", "router", "broadband", "signal"),
}
_MENU_QUESTIONS = ("router.clarify", "router.complaint", "router.urgent", "router.out_of_scope", "common.rephrase")
MENU_ANSWER_WORDS = 8


def menu_answer(ctx: AgentContext, state: CallState, text: str) -> str | None:
    """The specialist a short answer to the router's menu question names ("the bill", "service"), if just one."""
    agents = [t["text"] for t in state.get("transcript", []) if t["role"] == "agent"]
    if not agents or len(text.split()) > MENU_ANSWER_WORDS:
        return None
    if agents[-1] not in {ctx.prompts.reply(key) for key in _MENU_QUESTIONS}:
        return None
    return named_family(text)


def named_family(text: str) -> str | None:
    """The one specialist whose words `text` uses ("the technician", "autopay"), if it uses one family's only."""
    named = [agent for agent, words in _MENU_WORDS.items() if parsing.mentions(text, *words)]
    return named[0] if len(named) == 1 else None


# Money matters an internet provider has nothing to do with; the classifier, trained on bills and payments,
# reads "can you lend me some money?" or "help with my taxes" as billing. The provider's own words win.
_FINANCE = (
    "loan", "lend", "borrow", "mortgage", "tax", "stock", "shares", "invest", "bitcoin", "crypto", "insurance",
    "credit score", "retirement", "pension", "401k", "savings", "interest rate", "exchange rate",
)  # fmt: skip
_PROVIDER = (
    "bill", "balance", "charge", "invoice", "refund", "payment", "plan", "internet", "wifi", "wi-fi", "service",
    "technician", "router", "northwind", "outage", "broadband", "fiber", "modem", "connection",
)  # fmt: skip


def outside_business(text: str) -> bool:
    """Whether the caller asks about money matters an internet provider does not handle (loans, taxes, stocks)."""
    return parsing.mentions(text, *_FINANCE) and not parsing.mentions(text, *_PROVIDER)


def topicless(text: str) -> str | None:
    """ "opening" for a greeting or a bare request for help, "urgent" for urgency with no topic, else None."""
    t = parsing.normalize(text).replace(".", " ").replace(":", " ")
    t = " ".join(t.split())
    if not t:
        return None
    if _URGENT.fullmatch(t):
        return "urgent"
    if _OPENING.fullmatch(t) and _OPENS.search(t):
        return "opening"
    return None


# The words around who a caller says they are, in an introduction with no request in it ("Hi, this is Aisha
# Khan, my ZIP code is 11375", "hello, account N W one zero zero three").
_INTRO_WORDS = re.compile(
    r"\b(?:my|the|name(?:'s)?|is|it's|it is|this is|here|i'm|i am|speaking|calling|zip(?: code)?|postcode|"
    r"postal code|phone(?: number)?|number|account(?: number)?|holder|under|and|n|w)\b"
)


_NAME_LEAD = re.compile(r"\b(?:it's|it is|this is|my name|name's|name is|i'm|i am|speaking)\b")
# A name in one word is a name only after the words that say so ("my name is Maria"; "I'm Maria" may be "I'm
# fine").
_ONE_NAME = re.compile(r"^(?:(?:my|the) name(?:'s| is)|name(?:'s| is)) ([a-z][a-z'-]+)$")


def introduction(text: str) -> str | None:
    """The caller's first name (or "" when none was given) for a turn that only says who they are: a name, a
    phone or account number or a ZIP code, and greetings; None for anything else."""
    first, claimed = "", False
    for part in parsing.clauses(text):
        t = " ".join(parsing.normalize(part).replace(".", " ").replace(":", " ").replace("-", " ").split())
        if not t or _OPENING.fullmatch(t):
            continue  # "hi", "good morning"
        # A name only with its lead-in ("it's", "my name is"): two words alone are as often a verdict ("absolutely
        # pathetic") as a name.
        # After a name, the name again ("My name is Bond, James Bond"): no lead-in needed.
        name = parsing.person_name(part) if _NAME_LEAD.search(t) or first else None
        one = _ONE_NAME.fullmatch(t)
        if name is None and one and not parsing.not_a_name(one.group(1)):
            name = one.group(1).capitalize()
        if name is None and not (parsing.account_number(part) or parsing.phone_number(part) or parsing.zip_code(part)):
            return None
        if name is not None:
            t = re.sub(rf"\b{re.escape(name.lower())}\b", " ", t)
            # A whole name after a one-word one ("Bond, James Bond") gives the first name.
            whole = " " in name and first and first == name.split(" ")[-1]
            first = name.split(" ")[0] if whole or not first else first
        t = " ".join(w for w in t.split() if not w.isdigit() and w not in parsing.SAID_DIGITS)
        rest = " ".join(_INTRO_WORDS.sub(" ", t).split())
        if rest and not _OPENING.fullmatch(rest):
            return None
        claimed = True
    return first if claimed else None


def without_introduction(text: str) -> str:
    """The turn without the parts that only say who the caller is ("I'm James Carter, what's my balance?" ->
    "what's my balance"), for the classifier, which reads a name as a topic; the whole turn if that is all."""
    parts = parsing.clauses(text)
    rest = [p for p in parts if introduction(p) is None]
    if not rest or len(rest) == len(parts) or all(topicless(p) == "opening" for p in rest):
        return text
    return ", ".join(rest)


def asks_yes_no(task: Task) -> bool:
    """Whether the active specialist's open question is a yes or no one ("Shall I...?", "Would you like...?")."""
    awaiting = task.get("awaiting", "")
    return awaiting in {"confirm", "fixed"} or awaiting.startswith("offer_")


def request_after_answer(task: Task, verification_awaiting: str, text: str) -> str:
    """A new request the caller adds to their yes or no, or says instead of one, or adds to "no" after "anything
    else?", if any."""
    if verification_awaiting or (task.get("name") and not asks_yes_no(task)):
        return ""
    added = parsing.request_after_answer(text)
    if added or not asks_yes_no(task):
        return added
    # A question instead of the yes or no ("Would you like to pay it now?" "How come there's a late fee?"): the
    # open offer is dropped and the question answered, where the flow would have heard neither yes nor no.
    return parsing.new_request(text)


def answers_pending(task: Task, verification_awaiting: str, text: str, today: Any) -> bool:
    """Whether `text` reads as the answer to what the active specialist just asked."""
    if verification_awaiting:
        # A number, an account number or a name: what verification asked for ("It's James Carter").
        return bool(parsing.digits(text)) or parsing.person_name(text) is not None
    awaiting = task.get("awaiting", "")
    if not awaiting:
        return False
    words = parsing.normalize(text).split()
    if asks_yes_no(task):
        # "No wait, what's my balance?" answers and asks: `route` reads the request (`request_after_answer`).
        return parsing.yes_no(text) is not None and not parsing.request_after_answer(text)
    if awaiting in {"zip", "phone"}:
        return bool(parsing.digits(text))
    if awaiting in {"slot", "which_appointment"}:
        return any(
            (
                parsing.yes_no(text) is not None,
                parsing.mentions(text, "none", "neither", "other", "else", "different", "later", "earlier"),
                parsing.weekday(text, today) is not None,
                parsing.hour_of_day(text) is not None,
                parsing.ordinal_choice(text, 3) is not None,
                parsing.part_of_day(text) is not None,
            )
        )
    if awaiting == "amount":
        return parsing.amount_cents(text) is not None or parsing.wants_everything(text)
    # Free answers ("step", "line"): short replies belong to the running task.
    return len(words) <= SHORT_ANSWER_WORDS


class CallerIntent(BaseModel):
    """Name what the caller wants: one label of the router's set."""

    intent: Intent = Field(description="The label that fits the caller's words best")


async def classify(ctx: AgentContext, text: str, prediction: IntentPrediction) -> tuple[IntentPrediction, str]:
    """Give the LLM the last word when the local classifier is unsure and a model is configured.

    The model must call `CallerIntent`, whose schema is the label set, so its answer is a label, never prose to
    search; a reply without the call, or with a label outside the set, leaves the classifier's answer standing.
    """
    if prediction.confidence >= ctx.router_threshold or ctx.models is None:
        return prediction, "classifier"
    model = ctx.models.router_model().bind_tools([CallerIntent], tool_choice=CallerIntent.__name__)
    labelled = model | PydanticToolsParser(tools=[CallerIntent], first_tool_only=True)
    try:
        answer = await labelled.ainvoke([SystemMessage(ctx.prompts.system("router")), HumanMessage(text)])
    except Exception:  # noqa: BLE001 - a failing fallback must not fail the turn; the classifier's answer stands
        return prediction, "classifier"
    if not isinstance(answer, CallerIntent):
        return prediction, "classifier"
    return IntentPrediction(intent=answer.intent, confidence=prediction.confidence, scores=prediction.scores), "llm"


def needs_classifier(ctx: AgentContext, state: CallState) -> bool:
    """Whether `route` must classify this turn: not while the caller answers the active specialist."""
    active = state.get("active", "router")
    task: Task = state.get("task") or Task()
    text = state.get("utterance", "")
    return not (active in ROUTABLE and answers_pending(task, verification_of(state)["awaiting"], text, ctx.today()))


def intent_key(call_id: str, text: str) -> tuple[str, str]:
    """Where a turn's classification is kept: its call, and its words as the graph will see them."""
    return (call_id, text[:MAX_UTTERANCE_CHARS])


def speculate(ctx: AgentContext, call_id: str, utterance: str, *, first_turn: bool = False) -> bool:
    """Start classifying a turn's words before its graph run begins (the session adapter calls this).

    The classifier then overlaps the supervisor's checks. Short utterances are left alone: most answer a
    specialist's question ("10453", "yes", "the second one"), and `route` does not classify those, so
    the model would only compete with the event loop for the CPU (on two cores, a speculated run slowed
    the median turn by a fifth). For a short one that does go to `route`, `supervise` starts it. A call's
    first turn (`first_turn`) always goes to `route`, since no specialist is active yet, so its words are
    classified whatever their length ("What's my balance?").

    Returns whether a classification of these words is under way.
    """
    if not first_turn and len(utterance.split()) <= SHORT_ANSWER_WORDS:
        return False
    ctx.intents.start(intent_key(call_id, utterance))
    return True


def prefetch(ctx: AgentContext, state: CallState) -> None:
    """Start this turn's classification now: the turn is on its way to `route`, which will need it
    (`supervise` sends a turn there only when `needs_classifier` says so)."""
    ctx.intents.start(intent_key(state.get("call_id") or "", state.get("utterance", "")))


def staying(state: CallState) -> dict[str, Any]:
    """The update that keeps the call with its active specialist (the caller answers its question)."""
    return {"intent": state.get("active", "router"), "confidence": state.get("confidence", 0.0), "directive": None}


async def route(ctx: AgentContext, state: CallState) -> dict[str, Any]:
    """Decide who answers this turn: the active specialist, a new one, a human, or the router itself."""
    text = state.get("utterance", "")
    active = state.get("active", "router")
    # The call's intent stays the active specialist's while the caller answers its questions:
    # checked first, so a ZIP code or a "yes" costs neither the classifier nor a model call.
    stay = staying(state)
    if not needs_classifier(ctx, state):
        return stay
    task: Task = state.get("task") or Task()
    request = request_after_answer(task, verification_of(state)["awaiting"], text) if active in ROUTABLE else ""
    # What is classified: a request after an answer (the answer is the active specialist's to settle), or the
    # turn without the caller's introduction of themselves.
    subject = request or without_introduction(text)
    if subject != text:
        ctx.intents.discard(intent_key(state.get("call_id") or "", text))
    local = await ctx.intents.result(intent_key(state.get("call_id") or "", subject))
    prediction, source = await classify(ctx, subject, local)
    intent, confidence = prediction.intent, prediction.confidence
    update: dict[str, Any] = {"intent": intent, "confidence": round(confidence, 4), "directive": None}

    # Ending the service goes to billing, which offers a person once the caller is verified.
    cancels = parsing.cancels_service(subject)
    if active in ROUTABLE and active != "billing" and cancels:
        # "Actually I just want to cancel my account", mid-task: ending the service is billing's to offer to a
        # person, whatever the classifier makes of it (a complaint, or the active topic).
        return {**update, "intent": "billing", **_handoff(state, active, "billing", "topic_change", "words")}
    if request and not (intent == "escalation" and confidence >= ctx.switch_threshold):
        # The active specialist settles the answer, then takes the request or hands it to the one it is for.
        # The request is a new one by its words, not an answer mistaken for a topic: the router's own threshold.
        switching = intent != active and intent in ROUTABLE and confidence >= ctx.router_threshold
        return {**stay, "followup": request, "followup_intent": intent if switching else active}
    if active in ROUTABLE:
        switching = intent != active and intent in (*ROUTABLE, "escalation") and confidence >= ctx.switch_threshold
        if not switching:
            return {**stay, "confidence": state.get("confidence", local.confidence)}
        if intent == "escalation":
            update["escalate_for"] = "complaint"
            return update
        return {**update, **_handoff(state, active, intent, "topic_change", source)}

    if outside_business(text):
        return {
            **update,
            "intent": "out_of_scope",
            "reply": ctx.prompts.reply("router.out_of_scope"),
            "directive": "respond",
        }
    menu = menu_answer(ctx, state, text)
    if menu is not None:
        # The caller picked from the router's own question ("your bill, or a problem with your service?"):
        # their word decides, whatever the classifier makes of a fragment ("service" reads as a complaint).
        return {**update, "intent": menu, **_handoff(state, active, menu, f"intent:{menu}", "menu")}
    opening = topicless(text)
    if opening is not None:
        # Nothing to route yet: welcome the caller (or ask what is urgent) instead of refusing or guessing.
        reply = ctx.prompts.reply("common.greet" if opening == "opening" else "router.urgent")
        return {"intent": None, "confidence": 0.0, "reply": reply, "directive": "respond"}
    first_name = introduction(text) if active == "router" else None
    if first_name is not None:
        # Who they are, and nothing yet of what they want: welcome them, and verification starts from it.
        reply = (
            ctx.prompts.reply("common.greet_named", name=first_name)
            if first_name
            else ctx.prompts.reply("common.greet")
        )
        return {"intent": None, "confidence": 0.0, "reply": reply, "directive": "respond", "introduced": text[:200]}
    if cancels:
        # Ending the service: a person does it, offered by billing once the caller is verified, whatever the
        # classifier makes of it (it reads "cancel my service" as a complaint, "close my account" as support).
        return {**update, "intent": "billing", **_handoff(state, active, "billing", "intent:billing", "words")}
    if intent == "escalation" and (confidence >= ctx.router_threshold or source == "llm"):
        update["escalate_for"] = "complaint"
        return update
    if parsing.asks_about_account(text):
        # "What plan am I on?", "what's my account number?": a closed grammar for a question the classifier's
        # data barely has (it reads most as out of scope or support); billing reads it from the account.
        return {**update, "intent": "billing", **_handoff(state, active, "billing", "intent:billing", "words")}
    unsure = confidence < ctx.router_threshold and source == "classifier"
    if unsure and intent in ROUTABLE and named_family(text) == intent:
        # Two weak signals that agree ("The technician never showed up" at 0.53, "set up autopay" at 0.47): the
        # classifier's best guess and the only family the caller's words name. A question would only repeat it.
        return {**update, **_handoff(state, active, intent, f"intent:{intent}", "classifier+words")}
    if (intent == "out_of_scope" or unsure) and reading(text) == "anger":
        # A complaint with no topic ("useless", "nobody ever answers your phones"): ask what went wrong rather
        # than refuse it; the supervisor has counted the anger and hands the call to a person if it goes on.
        return {
            **update,
            "intent": "escalation",
            "reply": ctx.prompts.reply("router.complaint"),
            "directive": "respond",
        }
    if intent == "out_of_scope" and (confidence >= ctx.router_threshold or source == "llm"):
        return {**update, "reply": ctx.prompts.reply("router.out_of_scope"), "directive": "respond"}
    if unsure:
        failures = state.get("failures", 0) + (1 if state.get("intent") is not None else 0)
        return {**update, "reply": ctx.prompts.reply("router.clarify"), "directive": "respond", "failures": failures}
    return {**update, **_handoff(state, active, intent, f"intent:{intent}", source)}


def _handoff(state: CallState, from_agent: str, to_agent: str, reason: str, source: str) -> dict[str, Any]:
    who = verification_of(state)["name"] or "unverified caller"
    previous = state.get("task") or {}
    context = f"{who}; said: {state.get('utterance', '')[:200]!r}; routed by {source}"
    if previous.get("name"):
        context += f"; left {from_agent} task {previous.get('name')} unfinished"
    return {
        "active": to_agent,
        "task": {},
        "failures": 0,
        "handoffs": [
            Handoff(turn=state.get("turn", 0), from_agent=from_agent, to_agent=to_agent, reason=reason, context=context)
        ],
    }
