"""Each call costed as it ran, on the reference cloud stack (models by the routing policy) and on managed platforms."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.providers.llm import RoutingPolicy
from orchestrator.report import build_report, pricing, render_terminal
from orchestrator.telemetry.cost import (
    AS_RUN,
    MANAGED_HIGH,
    MANAGED_LOW,
    PROMPT_TOKENS,
    REFERENCE,
    CallTurn,
    PriceError,
    PriceTable,
    call_minutes,
    reference_cost,
    scenario_costs,
)
from tests.unit.test_telemetry_report import CALLS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TABLE, MODEL_FOR = pricing(
    PriceTable.load(ROOT / "orchestrator" / "telemetry" / "prices.yaml"),
    RoutingPolicy.load(ROOT / "prompts" / "routing.yaml"),
)


def test_the_routing_policy_picks_the_reference_models() -> None:
    assert MODEL_FOR("billing", 0.95) == "gpt-4o-mini"
    # Escalations and unsure turns get the large tier.
    assert MODEL_FOR("escalation", 0.95) == "gpt-4o"
    assert MODEL_FOR("billing", 0.5) == "gpt-4o"


def test_the_reference_stack_prices_words_characters_and_tokens() -> None:
    turn = CallTurn("what is my balance please", "Your balance is $42.", "billing", 0.95)
    usd = reference_cost(TABLE, [turn], model_for=MODEL_FOR, call_wide_usd=0.001)
    stt = 5 / 2.5 / 60 * TABLE.stt["deepgram"]
    tts = len(turn.agent) * TABLE.tts["cartesia"]
    rates = TABLE.llm[("openai", "gpt-4o-mini")]
    tokens_in = PROMPT_TOKENS + (len(turn.caller) + len(turn.agent)) / 4
    llm = (tokens_in * rates[0] + len(turn.agent) / 4 * rates[1]) / 1e6
    assert usd == pytest.approx(0.001 + stt + tts + llm)
    # A model the table has no price for leaves the reference unknown, never free.
    assert reference_cost(TABLE, [turn], model_for=lambda _i, _c: "gpt-9", call_wide_usd=0) is None


def test_scenarios_price_compute_and_managed_minutes_on_the_billable_minutes() -> None:
    turns = [CallTurn("hello " * 25, "hi " * 25, "support", 0.9)]
    # A text call that ran in 0.2 s is as long as its 50 words take to say, plus the answer time.
    minutes = call_minutes(0.2, turns, [1000.0])
    assert minutes == pytest.approx((50 / 2.5 + 1) / 60)
    assert call_minutes(300.0, turns) == pytest.approx(5.0)
    costs = scenario_costs(
        TABLE,
        as_run_usd=0.0000004,
        by_component={"compute": 0.0000004, "telephony": 0.0},
        minutes=minutes,
        turns=turns,
        model_for=MODEL_FOR,
    )
    assert TABLE.infrastructure is not None
    assert costs[AS_RUN] == pytest.approx(minutes * TABLE.infrastructure.per_minute)
    assert costs[MANAGED_LOW] == pytest.approx(minutes * 0.23)
    assert costs[MANAGED_HIGH] == pytest.approx(minutes * 0.33)
    assert costs[AS_RUN] < costs[REFERENCE] < costs[MANAGED_LOW]  # type: ignore[operator]  # all known here


def test_the_report_shows_every_stack_by_intent_and_hour_and_the_saving() -> None:
    report = build_report(CALLS, prices=(TABLE, MODEL_FOR))
    costs = report.costs
    assert set(costs["scenarios"]) == {AS_RUN, REFERENCE, MANAGED_LOW, MANAGED_HIGH}
    # The call with an unpriced part is unknown as run only; the other stacks price it from its words.
    assert costs["unknown_calls"] == {AS_RUN: 1, REFERENCE: 0, MANAGED_LOW: 0, MANAGED_HIGH: 0}
    assert costs["scenarios"][MANAGED_LOW]["per_minute"] == pytest.approx(0.23)
    assert set(costs["by_intent"]) == {"billing", "scheduling", "escalation"}
    assert set(costs["by_hour"]) == {"09", "10"}
    saving = costs["saving_vs_managed"]
    assert 0 < saving["as_run_vs_low"] < saving["as_run_vs_high"] < 1
    out = io.StringIO()
    render_terminal(report, Console(file=out, width=160))
    text = out.getvalue()
    for needle in ("Cost by stack", "reference cloud", "managed (high)", "by intent", "by hour", "saving per minute"):
        assert needle in text, needle


@pytest.mark.parametrize(
    ("infrastructure", "message"),
    [
        ({"instance_usd_per_hour": 0.2, "instance_vcpu": 4, "call_cpu": 0}, "call_cpu"),
        ({"instance_usd_per_hour": -1, "instance_vcpu": 4, "call_cpu": 0.1}, "instance_usd_per_hour"),
        ("fast", "infrastructure must be a mapping"),
    ],
)
def test_a_bad_infrastructure_price_is_refused_in_one_line(infrastructure: object, message: str) -> None:
    with pytest.raises(PriceError, match=message) as raised:
        PriceTable.from_dict({"infrastructure": infrastructure})
    assert "\n" not in str(raised.value)


def test_switchboard_report_refuses_a_bad_price_table_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from orchestrator.cli import app

    bad = tmp_path / "prices.yaml"
    bad.write_text("infrastructure: {instance_usd_per_hour: 0.2, instance_vcpu: 4, call_cpu: 0}\n")
    monkeypatch.setenv("SWITCHBOARD_PRICE_TABLE", str(bad))
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["report"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"SWITCHBOARD_PRICE_TABLE: {bad}: infrastructure.call_cpu and instance_vcpu must be more than 0"
    ]
