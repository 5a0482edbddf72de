"""Ordinary calls that used to go wrong: numbers read for the ear, retries that say something new, callers
identified by what they naturally give, and a new request in the same breath as an answer."""

from __future__ import annotations

import pytest

from evals.replies import check_replies, default_reply_policy
from orchestrator.results import CallResult
from orchestrator.runtime import Services
from orchestrator.session.endpointing import CONFIRMS_EFFECT_KEY
from orchestrator.session.text import TextCall, run_text_call

pytestmark = pytest.mark.flow

MARIA, JAMES, AISHA, TOM = "+15550100001", "+15550100002", "+15550100003", "+15550100004"
ELEANOR, ROBERT, SOFIA, DAVID = "+15550100005", "+15550100006", "+15550100007", "+15550100008"


async def talk(services: Services, *turns: str, caller_id: str | None = None) -> CallResult:
    return await run_text_call(services, turns, caller_id=caller_id)


def replies(result: CallResult) -> list[str]:
    return [t.agent for t in result.turns]


def broken_rules(result: CallResult) -> list[tuple[int, str]]:
    turns = [{"caller": t.caller, "agent": t.agent} for t in result.turns]
    return [(f.turn, f.rule) for f in check_replies(default_reply_policy(), turns, closed_by_caller=False)]


def tools_ok(result: CallResult) -> list[str]:
    return [e["name"] for e in result.tool_events if e["ok"]]


# ------------------------------------------------------------------ numbers for the ear


@pytest.mark.parametrize(
    ("caller", "turns"),
    [
        (JAMES, ["What's my balance?", "10453", "yes", "50 dollars"]),
        (AISHA, ["I was charged for a premium channel pack I never ordered", "11375"]),
        (MARIA, ["Can I reschedule my technician appointment?", "10027", "the first one", "yes"]),
        (TOM, ["Is there an outage? My internet is down.", "11215"]),
    ],
)
async def test_amounts_and_times_are_said_in_words(services: Services, caller: str, turns: list[str]) -> None:
    result = await talk(services, *turns, caller_id=caller)
    assert broken_rules(result) == [], replies(result)


async def test_a_balance_is_read_as_dollars_and_cents(services: Services) -> None:
    result = await talk(services, "What's my balance?", "10453", caller_id=JAMES)
    assert "one hundred forty-four dollars and ninety-eight cents" in result.turns[1].agent


# ------------------------------------------------------------------ never the same line twice to different words


async def test_a_second_wrong_zip_is_not_answered_word_for_word(services: Services) -> None:
    result = await talk(services, "What's my balance?", "10001", "10002", "10453", caller_id=JAMES)
    first, second = replies(result)[1:3]
    assert "doesn't match" in first
    assert second != first
    assert "get_balance" in tools_ok(result)
    assert broken_rules(result) == [], replies(result)


async def test_the_router_puts_a_refusal_another_way_when_asked_something_else_out_of_scope(
    services: Services,
) -> None:
    result = await talk(services, "Should I buy stocks?", "What about bonds then?", caller_id=TOM)
    first, second = replies(result)
    assert "not something I can help with" in first
    assert second != first
    assert broken_rules(result) == [], replies(result)


# ------------------------------------------------------------------ who the caller is, as they say it


async def test_a_caller_without_the_phone_number_is_told_what_else_works(services: Services) -> None:
    result = await talk(
        services, "What's my balance?", "I don't know the number, it's my wife's account", "I really don't know it"
    )
    asked, retried, again = replies(result)
    assert "account number" in retried
    assert "full name" in retried
    assert again != retried
    assert "get_balance" not in tools_ok(result)


@pytest.mark.parametrize(
    "turns",
    [
        ["What's my balance?", "It's James Carter", "10453"],
        ["What's my balance?", "james carter, ZIP code one oh four five three"],
        ["What's my balance?", "my account number is NW-1002", "10453"],
        ["What's my balance?", "N W one zero zero two", "one oh four five three"],
        ["What's my balance?", "the account is in my name, James Carter", "10453"],
        ["What's my balance?", "My account number is N W one zero zero two and my zip is one oh four five three"],
    ],
)
async def test_a_caller_is_verified_by_name_or_account_number_and_zip(services: Services, turns: list[str]) -> None:
    result = await talk(services, *turns)
    assert tools_ok(result) == ["get_balance"], replies(result)
    assert "James" in result.turns[-1].agent
    if len(turns) == 3:
        assert "ZIP code" in result.turns[1].agent


async def test_an_order_number_is_answered_with_what_works(services: Services) -> None:
    result = await talk(services, "What's my balance?", "my order number is 55812")
    assert "account number" in result.turns[1].agent
    assert "get_balance" not in tools_ok(result)


async def test_an_unknown_name_is_answered_like_a_customers_name_with_a_wrong_zip(services: Services) -> None:
    known = await talk(services, "What's my balance?", "James Carter", "99999", "88888", "77777")
    unknown = await talk(services, "What's my balance?", "John Smith", "99999", "88888", "77777")
    assert replies(unknown) == replies(known)
    for result in (known, unknown):
        assert (result.outcome, result.escalation_reason) == ("escalated", "verification_failed")
        assert "get_balance" not in tools_ok(result)


async def test_a_name_acts_only_on_the_account_it_verified(services: Services) -> None:
    # Maria's caller ID, James's name and ZIP: the balance read is James's, whom the caller proved to be.
    result = await talk(services, "What's my balance?", "it's under James Carter", "10453", caller_id=MARIA)
    assert "James" in result.turns[-1].agent
    assert "one hundred forty-four dollars" in result.turns[-1].agent


# ------------------------------------------------------------------ an answer and a new request in one breath


async def test_no_wait_after_anything_else_gets_the_answer_not_a_goodbye(services: Services) -> None:
    result = await talk(
        services,
        "There's a late fee on my bill I want to dispute",
        "10453",
        "yes",
        "no wait, what's my balance now?",
        caller_id=JAMES,
    )
    assert "anything else" in result.turns[2].agent
    assert "Goodbye" not in result.turns[3].agent
    assert "balance is" in result.turns[3].agent
    assert tools_ok(result) == ["list_invoices", "dispute_charge", "get_balance"]
    assert result.outcome != "escalated"


async def test_a_question_held_against_a_yes_is_answered_and_nothing_is_charged(services: Services) -> None:
    result = await talk(services, "What's my balance?", "10453", "yes, but when is it due?", caller_id=JAMES)
    assert "due on" in result.turns[2].agent
    assert "make_payment" not in tools_ok(result)


async def test_a_confirmed_cancellation_and_a_question_are_both_handled_in_order(services: Services) -> None:
    result = await talk(
        services, "I want to cancel my technician visit", "10027", "yes please, and what's my balance?", caller_id=MARIA
    )
    last = result.turns[2].agent
    assert tools_ok(result)[-2:] == ["cancel_visit", "get_balance"]
    assert "cancelled" in last, last
    assert "balance is" in last, last
    assert last.index("cancelled") < last.index("balance is"), last
    assert await services.tenant.scheduling.appointments("NW-1001") == []


async def test_declining_an_offer_with_a_request_for_another_specialist_hands_the_request_over(
    services: Services,
) -> None:
    result = await talk(
        services, "How much do I owe?", "11215", "no thanks, but is there an outage in my area?", caller_id=TOM
    )
    assert [h["to_agent"] for h in result.handoffs] == ["billing", "support"]
    assert "known outage" in result.turns[2].agent
    assert "make_payment" not in tools_ok(result)


async def test_a_plain_no_to_anything_else_still_ends_the_call(services: Services) -> None:
    result = await talk(services, "What's my balance?", "10453", "no", "no thanks", caller_id=JAMES)
    assert "Goodbye" in result.turns[-1].agent


@pytest.mark.parametrize("declined", ["no thanks", "never mind, I'll keep it"])
async def test_turning_down_the_offered_times_changes_nothing_and_the_call_goes_on(
    services: Services, declined: str
) -> None:
    before = await services.tenant.scheduling.appointments("NW-1001")
    result = await talk(
        services, "I need to reschedule my technician appointment", "10027", declined, "no", caller_id=MARIA
    )
    assert result.turns[2].agent.startswith("No problem, I haven't made any changes."), replies(result)
    assert "anything else" in result.turns[2].agent
    assert "Goodbye" in result.turns[3].agent
    assert result.outcome == "resolved"
    assert await services.tenant.scheduling.appointments("NW-1001") == before


async def test_a_no_to_the_offered_times_offers_others(services: Services) -> None:
    result = await talk(
        services, "I need to reschedule my technician appointment", "10027", "no, none of those", caller_id=MARIA
    )
    first, second = result.turns[1].agent, result.turns[2].agent
    assert "Which works best" in second, second
    assert second.split("I have ", 1)[1] != first.split("I have ", 1)[1]


async def test_a_no_to_a_cancellation_cancels_nothing(services: Services) -> None:
    result = await talk(services, "I want to cancel my technician visit", "10027", "no", caller_id=MARIA)
    assert result.turns[2].agent.startswith("No problem, I haven't made any changes."), replies(result)
    assert "cancel_visit" not in tools_ok(result)
    assert len(await services.tenant.scheduling.appointments("NW-1001")) == 1


async def test_only_a_reply_asking_to_confirm_an_effect_is_marked_as_one(services: Services) -> None:
    """The turn-taking gives an answer to "Shall I charge...?" more time (`session/endpointing.py`): the graph
    marks that reply, whatever its words."""
    call = TextCall(services, caller_id=JAMES)
    marks = []
    try:
        for said in ("What's my balance?", "10453", "yes"):
            await call.say(said)
            last = [m for m in call.session.history.messages() if m.role == "assistant"][-1]
            marks.append((last.text_content or "", (last.extra or {}).get(CONFIRMS_EFFECT_KEY)))
    finally:
        await call.aclose()
    assert [confirms for _, confirms in marks] == [False, False, True], marks
    assert marks[-1][0].startswith("Shall I charge"), marks


# ------------------------------------------------------------------ the last reply again, when asked


async def test_asking_to_hear_the_question_again_repeats_it_and_costs_no_verification_attempt(
    services: Services,
) -> None:
    result = await talk(
        services, "What's my balance?", "Sorry, can you repeat that?", "11111", "what was that?", caller_id=JAMES
    )
    asked, again, wrong, again_wrong = replies(result)
    assert again == asked, replies(result)
    assert again_wrong == wrong, replies(result)
    # One wrong ZIP so far: the repeat requests were no answers, so the call is not a failing verification yet.
    done = await talk(services, "What's my balance?", "please repeat", "say that again", "10453", caller_id=JAMES)
    assert "verified" in done.turns[-1].agent, replies(done)
    assert [i.reason for i in done.interventions if i.kind == "escalate"] == []


async def test_asking_twice_to_hear_the_offered_times_again_neither_loops_nor_transfers(services: Services) -> None:
    result = await talk(
        services,
        "I need to reschedule my technician appointment",
        "10027",
        "sorry, what did you say?",
        "could you repeat the times?",
        "hmm",
        caller_id=MARIA,
    )
    offer = result.turns[1].agent
    assert result.turns[2].agent == offer
    assert result.turns[3].agent == offer
    # After two repeats, an answer the flow cannot use is asked again in other words, not taken as a loop.
    assert result.turns[4].agent != offer
    assert result.outcome != "escalated", replies(result)
    assert result.handoffs[-1]["to_agent"] == "scheduling"


# ------------------------------------------------------------------ the router's own question answered in a word


@pytest.mark.parametrize(
    ("turns", "agent"),
    [
        (["Ugh, useless.", "service"], "support"),
        (["Terrible.", "the channel pack on my bill"], "billing"),
        (["Hmm I have a thing", "it is about the internet"], "support"),
    ],
)
async def test_a_fragment_answering_the_routers_question_goes_where_it_says(
    services: Services, turns: list[str], agent: str
) -> None:
    result = await talk(services, *turns, caller_id=TOM)
    assert [h["to_agent"] for h in result.handoffs] == [agent], replies(result)
    assert result.outcome != "escalated"


async def test_no_to_a_confirmation_with_a_question_is_declined_and_the_question_answered(services: Services) -> None:
    result = await talk(
        services,
        "Can I reschedule my technician appointment?",
        "10027",
        "the first one",
        "no wait, what time is my current one?",
        caller_id=MARIA,
    )
    last = result.turns[-1].agent
    assert "haven't made any changes" in last, last
    assert "December 1" in last, last
    assert "move_visit" not in tools_ok(result)


@pytest.mark.parametrize(
    ("said", "reply"),
    [
        ("Can you lend me some money until payday?", "not something I can help with"),
        ("Can you help me with my taxes?", "not something I can help with"),
        ("Hey there, how's it going?", "How can I help"),
    ],
)
async def test_money_matters_outside_the_business_and_small_talk_are_not_billing(
    services: Services, said: str, reply: str
) -> None:
    result = await talk(services, said, caller_id=TOM)
    assert result.handoffs == [], replies(result)
    assert reply in result.turns[0].agent


# ------------------------------------------------------------------ a question where a yes or no was asked for


@pytest.mark.parametrize(
    ("caller", "turns", "heard", "tool"),
    [
        # "Would you like to pay it now?" answered with a question about the bill: the question is answered.
        (JAMES, ["What's my balance?", "10453", "and when is it due?"], "due on", None),
        (JAMES, ["What's my balance?", "10453", "how come there's a late fee?"], "Late fee", None),
        # A refund asked for without the word, instead of the yes: offered, and granted on the caller's yes.
        (
            SOFIA,
            ["What's my balance?", "10301", "can I get the technician fee back", "yes"],
            "refund",
            "request_refund",
        ),
    ],
)
async def test_a_question_instead_of_a_yes_or_no_is_answered(
    services: Services, caller: str, turns: list[str], heard: str, tool: str | None
) -> None:
    result = await talk(services, *turns, caller_id=caller)
    asked = 2  # the turn after the offer
    assert "anything else" not in result.turns[asked].agent.lower(), replies(result)
    assert heard.lower() in " ".join(replies(result)[asked:]).lower(), replies(result)
    assert tool is None or tool in tools_ok(result)
    assert "make_payment" not in tools_ok(result)


async def test_a_yes_to_anything_else_is_asked_what_and_a_thanks_ends_the_call(services: Services) -> None:
    result = await talk(services, "What's my balance?", "10453", "no", "yes", "thank you", caller_id=JAMES)
    assert "anything else" in result.turns[2].agent.lower()
    assert "what else can I help you with" in result.turns[3].agent, replies(result)
    assert "Goodbye" in result.turns[4].agent, replies(result)
    assert result.outcome == "resolved"


async def test_a_question_at_the_zip_prompt_is_told_what_is_needed_and_spends_no_attempt(services: Services) -> None:
    result = await talk(
        services, "I need to move my technician visit", "what days do you have?", "10027", caller_id=MARIA
    )
    told = result.turns[1].agent
    assert "ZIP code" in told, replies(result)
    assert "doesn't match" not in told, replies(result)
    assert "verified" in result.turns[2].agent, replies(result)
    # Three questions in a row are no failed verification: they count as turns going nowhere, and a person
    # takes the call for that reason, not because the caller failed to prove who they are.
    stuck = await talk(services, "What's my balance?", "what do you need?", "the first one", "why?", caller_id=JAMES)
    assert stuck.escalation_reason != "verification_failed", replies(stuck)


async def test_an_outage_asked_about_again_is_told_how_it_stands_without_asking_the_zip_again(
    services: Services,
) -> None:
    result = await talk(
        services, "Is there an outage in my area?", "11215", "oh ok, when will it be fixed?", "alright thanks"
    )
    first, again = result.turns[1].agent, result.turns[2].agent
    assert "known outage" in first
    assert "ZIP" not in again, replies(result)
    assert "still working on the outage" in again, replies(result)
    assert "Goodbye" in result.turns[3].agent
    assert result.outcome == "resolved"


async def test_asking_whether_a_payment_went_through_reads_the_balance_and_takes_no_payment(
    services: Services,
) -> None:
    result = await talk(
        services, "Can you check if my payment from last week went through?", "10453", "ok", caller_id=JAMES
    )
    assert "Your balance is" in result.turns[1].agent, replies(result)
    assert "how much would you like to pay" not in result.turns[1].agent.lower()
    assert "make_payment" not in tools_ok(result)


@pytest.mark.parametrize(
    ("caller", "said"),
    [
        (AISHA, "It's Aisha Khan, my zip is 11375, what's my balance?"),
        (None, "What's my balance? It's Aisha Khan, zip code 11375"),
        (AISHA, "What's my balance? My ZIP is 11375"),
    ],
)
async def test_who_and_the_zip_said_with_the_request_verify_the_caller_at_once(
    services: Services, caller: str | None, said: str
) -> None:
    result = await talk(services, said, caller_id=caller)
    assert "you're verified" in result.turns[0].agent, replies(result)
    assert "Your balance is" in result.turns[0].agent, replies(result)


async def test_a_wrong_zip_said_with_the_request_is_a_failed_attempt_like_any_other(services: Services) -> None:
    result = await talk(services, "What's my balance? My ZIP is 99999", "11375", caller_id=AISHA)
    assert "doesn't match" in result.turns[0].agent, replies(result)
    assert "you're verified" in result.turns[1].agent, replies(result)


# ------------------------------------------------------------------ what callers ask that no task answered


@pytest.mark.parametrize(
    "question", ["Why is my bill so high this month?", "Can you go through my bill with me?", "What am I paying for?"]
)
async def test_a_question_about_the_bill_says_what_is_new_on_it_and_a_yes_disputes_that(
    services: Services, question: str
) -> None:
    result = await talk(services, question, "10301", "yes", caller_id=SOFIA)
    said = result.turns[1].agent
    # The total, the difference from the bill before and why, then an offer to dispute it, not to pay.
    assert "bill is ninety-eight dollars and ninety-nine cents" in said, said
    assert "forty-nine dollars more than the one before, because of the Technician visit fee" in said, said
    assert said.endswith("Would you like me to open a dispute on it?"), said
    assert "I've opened a dispute on the Technician visit fee charge" in result.turns[2].agent, replies(result)
    assert "make_payment" not in tools_ok(result)
    assert broken_rules(result) == [], replies(result)


async def test_a_bill_that_did_not_go_up_is_read_by_its_charges(services: Services) -> None:
    result = await talk(services, "Can you explain my bill?", "10011", "no thanks", caller_id=DAVID)
    said = result.turns[1].agent
    assert "It has charges for Fiber 500 monthly plan" in said, said
    assert "more than the one before" not in said
    assert "Is there anything else" in result.turns[2].agent, replies(result)
    assert "dispute_charge" not in tools_ok(result)
    assert broken_rules(result) == [], replies(result)


@pytest.mark.parametrize(
    ("caller", "turns", "charge"),
    [
        (SOFIA, ["What's my balance?", "10301", "what's the 49 dollar charge for?", "yes"], "Technician visit fee"),
        (JAMES, ["Can you explain my bill?", "10453", "the late fee", "yes"], "Late fee"),
        (JAMES, ["Can you explain my bill?", "10453", "the 15 dollar one", "yes"], "Late fee"),
        (JAMES, ["What is the 15 dollar charge for?", "10453", "yes"], "Late fee"),
    ],
)
async def test_a_charge_named_by_its_amount_or_its_words_is_the_one_disputed(
    services: Services, caller: str, turns: list[str], charge: str
) -> None:
    result = await talk(services, *turns, caller_id=caller)
    confirm, done = result.turns[-2].agent, result.turns[-1].agent
    assert f"I see a {charge} charge" in confirm, replies(result)
    assert f"I've opened a dispute on the {charge} charge" in done, replies(result)
    assert [e for e in result.tool_events if e["name"] == "dispute_charge" and e["ok"]], replies(result)


async def test_this_month_says_when_not_which_charge(services: Services) -> None:
    # "I was double charged this month": no charge named, so the caller is asked which, not offered the plan.
    result = await talk(services, "I was double charged this month", "11375", caller_id=AISHA)
    assert "Which charge do you mean?" in result.turns[1].agent, replies(result)


@pytest.mark.parametrize("question", ["What's my account number?", "What plan am I on?", "Which plan do I have?"])
async def test_the_account_number_and_plan_are_read_from_the_verified_account(
    services: Services, question: str
) -> None:
    result = await talk(services, question, "10021", caller_id=ELEANOR)
    said = result.turns[1].agent
    assert "you're verified" in said, replies(result)
    assert "N W, one zero zero five" in said, said
    assert "Fiber 2 Gig plan" in said, said
    assert "outage" not in said
    # Nothing is told before the caller is verified.
    assert "one zero zero five" not in result.turns[0].agent


@pytest.mark.parametrize(
    "request_",
    [
        "I'd like to set up autopay",
        "I need to update my credit card on file",
        "Can I upgrade my plan?",
        "I want to upgrade my internet plan",
    ],
)
async def test_a_change_no_tool_can_make_is_offered_to_a_person_not_answered_with_the_balance(
    services: Services, request_: str
) -> None:
    result = await talk(services, request_, "10453", "yes", caller_id=JAMES)
    offer = result.turns[1].agent
    assert "billing team can do that" in offer, replies(result)
    assert "Your balance is" not in offer
    assert result.outcome == "escalated"
    assert result.escalation_reason == "account_change"
    assert "make_payment" not in tools_ok(result)


@pytest.mark.parametrize("question", ["Is the technician still coming?", "Is my appointment still on?"])
async def test_a_question_about_a_visit_is_answered_from_the_bookings(services: Services, question: str) -> None:
    booked = await talk(services, question, "10027", caller_id=MARIA)
    assert "You have a technician visit on" in booked.turns[1].agent, replies(booked)
    assert "Which works best" not in booked.turns[1].agent
    none = await talk(services, question, "10011", "no thanks", caller_id=DAVID)
    assert "I don't see any technician visits booked" in none.turns[1].agent, replies(none)
    assert "book_visit" not in tools_ok(none)


@pytest.mark.parametrize(("caller", "zip_code", "moved"), [(MARIA, "10027", True), (DAVID, "10011", False)])
async def test_a_technician_who_never_came_gets_an_apology_and_the_earliest_times(
    services: Services, caller: str, zip_code: str, moved: bool
) -> None:
    result = await talk(
        services, "The technician never showed up yesterday", zip_code, "the first one", "yes", caller_id=caller
    )
    offer = result.turns[1].agent
    assert offer.split("verified. ")[1].startswith("I'm really sorry the technician didn't make it"), offer
    assert ("currently booked" in offer) is moved, offer
    assert ("move_visit" if moved else "book_visit") in tools_ok(result), replies(result)
    assert broken_rules(result) == [], replies(result)


async def test_a_caller_who_does_not_know_the_zip_is_helped_without_it(services: Services) -> None:
    result = await talk(services, "My internet is down", "I don't know my zip code", "yes")
    assert "go on without it" in result.turns[1].agent, replies(result)
    assert "Step 1" in result.turns[2].agent, replies(result)


@pytest.mark.parametrize(
    ("turns", "asked_for_the_zip"),
    [
        (["hi, it's Aisha Khan, zip 11375", "I was double charged this month"], False),
        (["Hello, this is James Carter", "what's my balance?", "10453"], True),
        (["I'm James Carter, what's my balance?", "10453"], True),
    ],
)
async def test_who_the_caller_says_they_are_first_is_not_asked_for_again(
    services: Services, turns: list[str], asked_for_the_zip: bool
) -> None:
    result = await talk(services, *turns)  # no caller ID: only what they say identifies them
    said = replies(result)
    assert not any("not something I can help with" in r for r in said), said
    assert not any("phone number on the account" in r for r in said), said
    assert any("ZIP code on the account" in r for r in said) is asked_for_the_zip, said
    assert "you're verified" in said[-1], said


# ------------------------------------------------------------------ goodbyes, due dates, cancellations, "why?"


@pytest.mark.parametrize("goodbye", ["ok thanks bye", "alright, thank you, have a good day", "okay great, bye now"])
async def test_a_goodbye_after_a_yes_or_no_question_ends_the_call_and_takes_nothing_for_a_yes(
    services: Services, goodbye: str
) -> None:
    result = await talk(services, "What's my balance?", "10027", goodbye, caller_id=MARIA)
    assert "Would you like to pay it now?" in result.turns[1].agent, replies(result)
    assert result.turns[2].agent == services.prompts.reply("common.goodbye"), replies(result)
    assert "Shall I charge" not in " ".join(replies(result))
    assert result.outcome == "resolved"


@pytest.mark.parametrize(
    "question", ["When is my next bill due?", "when do I have to pay it by?", "What's the due date on my bill?"]
)
async def test_a_question_about_when_the_bill_is_due_is_answered_with_the_date_not_the_balance_again(
    services: Services, question: str
) -> None:
    result = await talk(services, "What's my balance?", "10027", question, caller_id=MARIA)
    said = result.turns[2].agent
    assert said != result.turns[1].agent, replies(result)
    assert "is due on December" in said, said
    assert "Your balance is" not in said
    # Asked first, before the balance: the date too, once the caller is verified.
    first = await talk(services, question, "10027", caller_id=MARIA)
    assert "is due on December" in first.turns[1].agent, replies(first)


@pytest.mark.parametrize(
    "turns",
    [
        ["I want to cancel my service", "10027", "yes"],
        ["I'd like to cancel my internet", "10027", "yes"],
        ["We're switching to another provider, I need to close my account", "10027", "yes"],
        ["my internet keeps dropping", "10027", "actually I just want to cancel my account", "10027", "yes"],
    ],
)
async def test_a_caller_who_wants_to_cancel_is_verified_and_offered_a_person_for_it(
    services: Services, turns: list[str]
) -> None:
    result = await talk(services, *turns, caller_id=MARIA)
    offer = result.turns[-2].agent
    assert "can't cancel your service myself" in offer, replies(result)
    assert "you're verified" in offer
    assert result.outcome == "escalated"
    assert result.escalation_reason == "cancellation"


async def test_cancelling_a_visit_is_still_scheduling_not_the_service(services: Services) -> None:
    result = await talk(services, "I need to cancel my technician appointment", "10027", "yes", caller_id=MARIA)
    assert "Shall I cancel it?" in result.turns[1].agent, replies(result)
    assert "cancel_visit" in tools_ok(result)


@pytest.mark.parametrize(
    ("caller", "turns", "because"),
    [
        (MARIA, ["my internet keeps dropping", "why do you need that?", "11215"], "check for outages"),
        (MARIA, ["What's my balance?", "why?", "10027"], "speaking with the account holder"),
        (None, ["What's my balance?", "what for?", "555 010 0001", "why do you need my zip?", "10027"], "holder"),
    ],
)
async def test_a_caller_who_asks_why_is_told_and_asked_again_and_loses_no_attempt(
    services: Services, caller: str | None, turns: list[str], because: str
) -> None:
    result = await talk(services, *turns, caller_id=caller)
    why = result.turns[1].agent
    assert because in why, replies(result)
    assert why.endswith("?"), why
    assert "couldn't" not in why
    assert "didn't catch" not in why
    assert result.turns[-1].agent != why
    if turns[-1] == "10027":
        assert "you're verified" in result.turns[-1].agent, replies(result)


async def test_what_do_you_mean_after_a_yes_or_no_question_asks_it_again_in_plain_words(services: Services) -> None:
    result = await talk(services, "What's my balance?", "10027", "what do you mean?", "no thanks", caller_id=MARIA)
    assert result.turns[2].agent == "What I'm asking is: would you like to pay it now?", replies(result)
    assert "make_payment" not in tools_ok(result)


async def test_what_do_you_mean_after_a_choice_of_times_says_the_times_again(services: Services) -> None:
    result = await talk(
        services, "I'd like to book a technician", "10027", "why not", "the first one", "yes", caller_id=MARIA
    )
    again = result.turns[2].agent
    assert again.startswith("Let me say that again. I have "), replies(result)
    assert again.endswith("Which works best for you?"), again
    assert "verified" not in again
    assert "book_visit" in tools_ok(result)


@pytest.mark.parametrize(
    ("opening", "first_name"),
    [
        ("Hi, my name is Bond, James Bond", "James"),
        ("My name is Maria", "Maria"),
        ("hello, the name's Robert", "Robert"),
    ],
)
async def test_a_name_in_one_word_or_said_twice_is_an_introduction(
    services: Services, opening: str, first_name: str
) -> None:
    result = await talk(services, opening, "What's my balance?")
    assert result.turns[0].agent == services.prompts.reply("common.greet_named", name=first_name), replies(result)
