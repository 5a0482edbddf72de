"""The supervisor's cheap checks: what escalates, what re-prompts, what passes."""

from __future__ import annotations

import pytest

from agents.context import AgentContext
from agents.prompts import Prompts
from agents.state import CallState, ReplyCut, Turn
from agents.supervisor import _mask_emails, _refund_promise_cents, check_utterance, cut_reply, supervise
from orchestrator.config import PROMPTS_DIR

pytestmark = pytest.mark.unit

PROMPTS = Prompts.load(PROMPTS_DIR)


def history(*caller_lines: str, agent_last: str = "", agent_says: str = "") -> CallState:
    transcript: list[Turn] = []
    for text in caller_lines:
        transcript.append(Turn(role="caller", agent="caller", text=text))
        if agent_says:
            transcript.append(Turn(role="agent", agent="billing", text=agent_says))
    if agent_last:
        transcript.append(Turn(role="agent", agent="billing", text=agent_last))
    return CallState(transcript=transcript)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I want to talk to a real person", "requested_human"),
        ("agent", "requested_human"),
        ("representative please", "requested_human"),
        ("I'm calling my lawyer about this", "legal_threat"),
        ("I will take you to small claims court", "legal_threat"),
        ("I'm going to sue you for this", "legal_threat"),
        ("Honestly, I want to sue Northwind over it", "legal_threat"),
        ("there's smoke coming out of the router", "emergency"),
        ("the cable outside is sparking", "emergency"),
        # Theft, robbery, fraud and identity theft go to a person on the turn they are reported.
        ("someone stole my identity", "fraud"),
        ("there are fraudulent charges on my account", "fraud"),
        ("my router was stolen", "fraud"),
        ("I got robbed and they took the modem", "fraud"),
        ("somebody opened an account in my name", "fraud"),
        # Requests for a person in other words.
        ("can I get someone on the line", "requested_human"),
        ("I don't want to talk to a machine", "requested_human"),
        ("could I be put through to an advisor", "requested_human"),
    ],
)
def test_escalating_words(text: str, reason: str) -> None:
    assert check_utterance(text, CallState()).escalate == reason


@pytest.mark.parametrize(
    "text",
    [
        # Products, people's and business names, job titles, words inside words.
        "my Fire TV stick keeps buffering",
        "my wife Sue is the account holder",
        "please send the bill addressed to Sue Lawson",
        "can I talk to Sue in billing again?",
        "Frank will be home for the technician",
        "my account manager said I'd get a discount",
        "I live at 12 Oak Court",
        "I'm a lawyer and I work from home",
        "transfer me to billing please",
        # Negations, questions, past and hypothetical mentions.
        "I don't need a human, just tell me my balance",
        "it's not an emergency, but my wifi is slow",
        "I'm not going to sue anyone, I just want it fixed",
        "what would happen if the router caught fire?",
        "my phone was stolen last year, so I need to update the number",
        "how do I protect my account from fraud?",
        "I talked to an agent yesterday and she booked me in",
        "nothing was stolen, I only moved the router to the hallway",
        "nobody hacked me, I just forgot my password",
        "no need to get a manager, that answers it",
    ],
)
def test_innocent_words_do_not_escalate(text: str) -> None:
    check = check_utterance(text, CallState())
    assert check.escalate is None
    assert not check.warn
    assert check.frustration_delta == 0


@pytest.mark.parametrize("text", ["I need to book a visit", "what's my balance", "my wifi is slow", "yes", "10027"])
def test_normal_turns_pass(text: str) -> None:
    check = check_utterance(text, CallState())
    assert check.escalate is None
    assert check.directive is None


def test_anger_accumulates_then_escalates() -> None:
    assert check_utterance("this is ridiculous", CallState(frustration=0)).frustration_delta == 1
    assert check_utterance("this is ridiculous", CallState(frustration=2)).escalate == "frustration"


def test_abuse_warns_first_then_escalates() -> None:
    first = check_utterance("you stupid bot", CallState(frustration=0))
    assert first.warn
    assert first.escalate is None
    assert check_utterance("you stupid bot", CallState(frustration=1)).escalate == "abuse"


@pytest.mark.parametrize(
    ("text", "reason"), [("we're going round in circles", "loop"), ("you keep getting it wrong", "repeated_failures")]
)
def test_a_caller_saying_the_call_is_stuck_is_believed_once_the_call_shows_it(text: str, reason: str) -> None:
    # Alone, it may follow a question asked again for good reason: a frustration point, and the turn goes on.
    first = check_utterance(text, CallState())
    assert (first.escalate, first.cue, first.frustration_delta) == (None, reason, 1)
    assert check_utterance(text, CallState(failures=1)).escalate == reason
    assert check_utterance(text, CallState(frustration=1)).escalate == reason
    echoed = history("10027", "10027", agent_says="Sorry, that doesn't match our records.")
    assert check_utterance(text, echoed).escalate == reason


def test_an_answer_that_says_it_was_given_already_is_still_answered() -> None:
    check = check_utterance("I already told you, it's 10027", CallState(frustration=0))
    assert check.escalate is None
    assert check.directive is None


def test_loops_and_repeated_failures_escalate() -> None:
    stuck = history("what about the thing", "what about the thing", agent_says="Sorry, which charge?")
    assert check_utterance("what about the thing", stuck).escalate == "loop"
    # Saying "done" at every step of a walkthrough is progress, not a loop.
    steps = CallState(
        transcript=[
            Turn(role="caller", agent="caller", text="done"),
            Turn(role="agent", agent="support", text="Step 2: unplug it."),
            Turn(role="caller", agent="caller", text="done"),
            Turn(role="agent", agent="support", text="Step 3: wait."),
        ]
    )
    assert check_utterance("done", steps).escalate is None
    assert check_utterance("hmm", CallState(failures=3)).escalate == "repeated_failures"


@pytest.mark.parametrize(("text", "directive"), [("", "reprompt"), ("   ", "reprompt"), ("hello", "greet")])
def test_reprompts_and_greetings(text: str, directive: str) -> None:
    assert check_utterance(text, CallState()).directive == directive


@pytest.mark.parametrize(
    "text", ["Hola, necesito ayuda con mi factura por favor", "我的网络断了", "Bonjour, je voudrais payer"]
)
def test_other_languages_get_a_clear_reply(text: str) -> None:
    assert check_utterance(text, CallState()).directive == "language"


def test_closing_only_after_anything_else() -> None:
    assert (
        check_utterance("no thanks", history(agent_last="Is there anything else I can help you with?")).directive
        == "close"
    )
    assert check_utterance("no thanks", history(agent_last="Shall I book it?")).directive is None


@pytest.mark.parametrize(
    "text",
    ["fine", "that's fine", "I'm all set", "that'll be all, thanks", "we're good", "no, I think that's everything"],
)
def test_the_ways_callers_say_that_was_all_close_the_call(text: str) -> None:
    anything_else = history(agent_last="Is there anything else I can help you with?")
    assert check_utterance(text, anything_else).directive == "close"


@pytest.mark.parametrize(
    "text", ["that's fine, can you also check my appointment?", "fine, but what's my balance now?"]
)
def test_that_was_all_with_a_request_after_it_is_no_goodbye(text: str) -> None:
    anything_else = history(agent_last="Is there anything else I can help you with?")
    assert check_utterance(text, anything_else).directive != "close"


@pytest.mark.parametrize("text", ["hmm okay", "alright", "okay then", "I see", "got it, thanks"])
def test_an_acknowledgement_after_anything_else_asks_once_then_ends_the_call(text: str) -> None:
    first = check_utterance(text, history(agent_last="Is there anything else I can help you with?"))
    assert first.directive == "more_or_done"
    asked = PROMPTS.reply("common.more_or_done")
    assert check_utterance(text, history(agent_last=asked)).directive == "close"
    # Mid-task it is the task's answer ("okay" to "tell me when you're done"), not the supervisor's.
    assert (
        check_utterance(text, history(agent_last="Step 2: Unplug the router. Tell me when you're done.")).directive
        is None
    )


@pytest.mark.parametrize(
    "text", ["ok thanks bye", "alright, thank you, have a good day", "no, bye", "great, thanks, take care", "bye bye"]
)
def test_a_turn_that_ends_in_a_goodbye_closes_whatever_was_asked(text: str) -> None:
    asked = history(agent_last="Your balance is forty dollars. Would you like to pay it now?")
    assert check_utterance(text, asked).directive == "close"


@pytest.mark.parametrize(
    "text", ["yes please, and bye", "thanks, can I pay it by friday? bye", "can I pay it by friday"]
)
def test_a_goodbye_word_inside_a_request_or_a_yes_is_no_goodbye(text: str) -> None:
    asked = history(agent_last="Your balance is forty dollars. Would you like to pay it now?")
    assert check_utterance(text, asked).directive != "close"


@pytest.mark.parametrize("text", ["why?", "Why do you need that?", "what for", "what do you mean?", "huh, why not"])
def test_why_or_what_do_you_mean_after_a_question_is_a_question_about_it(text: str) -> None:
    assert check_utterance(text, history(agent_last="What's the ZIP code on your account?")).directive == "why"
    # After a statement there is no question to explain: the turn goes on as any other.
    assert check_utterance(text, history(agent_last="Your payment went through.")).directive != "why"


def test_reply_guards() -> None:
    assert _refund_promise_cents("I've refunded $120.00 to your card.") == 12000
    assert _refund_promise_cents("Your balance is $40.") is None
    assert _mask_emails("sent to maria.gonzalez@example.com") == "sent to m***@example.com"
    assert _mask_emails("sent to m***@example.com") == "sent to m***@example.com"


REPLY = "I can check that for you. What's the ZIP code where you have service?"


def test_a_cut_reply_keeps_what_the_caller_heard() -> None:
    before = [
        Turn(role="caller", agent="caller", text="My internet keeps dropping"),
        Turn(role="agent", agent="support", text=REPLY),
    ]
    # The session's text of a streamed reply may differ in spacing only.
    cut = cut_reply(before, ReplyCut(said=REPLY.replace(". ", ".  "), heard="I can check"))
    assert cut == [before[0], Turn(role="agent", agent="support", text="I can check", interrupted=True)]
    assert before[1] == Turn(role="agent", agent="support", text=REPLY), "the old list is not changed"
    # A supervisor's line after the reply does not hide it.
    human = Turn(role="human", agent="human", text="One moment, please.")
    assert cut_reply([*before, human], ReplyCut(said=REPLY, heard="")) == [
        before[0],
        Turn(role="agent", agent="support", text="", interrupted=True),
        human,
    ]


@pytest.mark.parametrize(
    "transcript",
    [
        # The cut turn never saved its reply: the newest line is the caller's, and the older reply was heard.
        [Turn(role="agent", agent="support", text=REPLY), Turn(role="caller", agent="caller", text="hello?")],
        # The newest reply is another one.
        [Turn(role="caller", agent="caller", text="hi"), Turn(role="agent", agent="router", text="How can I help?")],
        [],
    ],
)
def test_a_cut_that_is_not_the_newest_reply_changes_nothing(transcript: list[Turn]) -> None:
    assert cut_reply(transcript, ReplyCut(said=REPLY, heard="I can")) is None


def test_a_learned_trigger_counts_where_the_patterns_find_none_and_never_over_them() -> None:
    unknown = "I need to ring the fire brigade and the line is dead"
    assert check_utterance(unknown, CallState()).escalate is None
    assert check_utterance(unknown, CallState(), "emergency").escalate == "emergency"
    # Anger from the head counts as the patterns' anger does: a frustration point, no escalation on one turn.
    assert check_utterance("this is taking the mickey", CallState(), "anger").frustration_delta == 1
    assert check_utterance("I want to talk to a real person", CallState(), "fraud").escalate == "requested_human"
    assert check_utterance("hello", CallState(), "abuse").directive == "greet"
    assert check_utterance("my balance please", CallState(), "not a trigger") == check_utterance(
        "my balance please", CallState()
    )


def plain_context() -> AgentContext:
    return AgentContext(
        tenant=None,  # type: ignore[arg-type]  # the pre-turn checks never touch the tenant
        classifier=None,  # type: ignore[arg-type]  # the learned reading is passed in
        prompts=Prompts.load(PROMPTS_DIR),
        models=None,
    )


async def test_the_learned_reading_is_asked_only_for_a_turn_the_patterns_leave_alone() -> None:
    asked: list[str] = []

    async def learned() -> str | None:
        asked.append("asked")
        return "fraud"

    ctx = plain_context()
    update = await supervise(ctx, CallState(utterance="somebody keeps logging into my account"), learned)
    assert update["escalate_for"] == "fraud"
    assert [i["reason"] for i in update["interventions"]] == ["fraud"]
    assert asked == ["asked"]
    for already in ("I want to talk to a real person", "hello", ""):
        await supervise(ctx, CallState(utterance=already), learned)
    assert asked == ["asked"]
