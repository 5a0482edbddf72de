"""Cost per call: price table parsing, per-line arithmetic, cached phrases, unknown prices, aggregation."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.results import segments_of
from orchestrator.telemetry.cost import (
    CostRollup,
    PriceError,
    PriceTable,
    ProviderProfile,
    Usage,
    call_usage,
    price,
    price_call,
)

pytestmark = pytest.mark.unit

PRICES = Path(__file__).resolve().parents[2] / "orchestrator" / "telemetry" / "prices.yaml"

TABLE = PriceTable.from_dict(
    {
        "stt": {"deepgram": {"per_minute": 0.006}},
        "llm": {"openai": {"gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.60}}},
        "tts": {"cartesia": {"per_character": 0.00004}},
        "telephony": {"sip-trunk": {"per_minute": 0.01}},
        "livekit": {"livekit-cloud": {"per_minute": 0.0005}},
        "infrastructure": {"instance_usd_per_hour": 0.24, "instance_vcpu": 4, "call_cpu": 0.2},
    }
)
# 0.24 $/h over 20 calls at once: $0.0002 a minute of call.
COMPUTE_PER_MINUTE = 0.0002


def test_each_component_is_priced_by_its_unit() -> None:
    assert price(TABLE, Usage("stt", "deepgram", seconds=90)).usd == pytest.approx(0.009)
    assert price(TABLE, Usage("tts", "cartesia", characters=1000)).usd == pytest.approx(0.04)
    llm = Usage("llm", "openai", model="gpt-4o-mini", input_tokens=2000, output_tokens=500)
    assert price(TABLE, llm).usd == pytest.approx((2000 * 0.15 + 500 * 0.60) / 1e6)
    assert price(TABLE, Usage("telephony", "sip-trunk", seconds=120)).usd == pytest.approx(0.02)
    assert price(TABLE, Usage("livekit", "livekit-cloud", seconds=60)).usd == pytest.approx(0.0005)


def test_a_cached_phrase_costs_nothing() -> None:
    assert price(TABLE, Usage("tts", "cartesia", characters=500, cached=True)).usd == 0.0


def test_a_missing_price_is_unknown_not_zero() -> None:
    cost = price_call(
        TABLE,
        [
            Usage("stt", "deepgram", seconds=60),
            Usage("llm", "openai", model="gpt-5-unpriced", input_tokens=100, output_tokens=10),
            Usage("tts", "elevenlabs", characters=10),
        ],
    )
    assert cost.total_usd is None
    assert cost.known_usd == pytest.approx(0.006)
    assert cost.unknown == ["llm:openai/gpt-5-unpriced", "tts:elevenlabs"]
    assert cost.to_json()["total_usd"] is None


def test_call_usage_from_turns_spreads_call_minutes_and_skips_cached_replies() -> None:
    turns = [("what's my balance", "Your balance is $10."), ("bye", "Goodbye.")]
    usage = call_usage(
        turns, profile=ProviderProfile.production(), duration_s=60, cached_phrases=["Goodbye."], stt_seconds=[1.5]
    )
    stt = [u for u in usage if u.component == "stt"]
    assert [(u.seconds, u.estimated) for u in stt] == [(1.5, False), (1 / 2.5, True)]
    tts = [u for u in usage if u.component == "tts"]
    assert [(u.characters, u.cached) for u in tts] == [(20, False), (8, True)]
    cost = price_call(TABLE, usage)
    call_wide = 0.01 + 0.0005 + COMPUTE_PER_MINUTE
    assert cost.total_usd == pytest.approx((1.5 + 0.4) / 60 * 0.006 + 20 * 0.00004 + call_wide)
    per_turn = cost.by_turn(2)
    assert sum(per_turn) == pytest.approx(cost.known_usd)
    assert per_turn[1] == pytest.approx(0.4 / 60 * 0.006 + call_wide / 2)


def test_the_embedded_default_costs_its_compute_by_the_minute() -> None:
    table = PriceTable.load(PRICES)
    assert table.infrastructure is not None
    # The shipped figures: a $0.192/h 4 vCPU node, 0.16 cores a call in progress (25 calls at once).
    assert table.infrastructure.calls_per_instance == pytest.approx(25)
    assert table.infrastructure.per_minute == pytest.approx(0.192 / 60 / 25)
    for profile in (ProviderProfile.text(), ProviderProfile.embedded_voice()):
        usage = call_usage([("hi", "Hello.")], profile=profile, duration_s=90, stt_seconds=[0.5])
        cost = price_call(table, usage)
        assert cost.unknown == []
        assert cost.by_component()["compute"] == pytest.approx(1.5 * table.infrastructure.per_minute)
        assert cost.total_usd == pytest.approx(1.5 * table.infrastructure.per_minute)


def test_a_table_without_infrastructure_leaves_compute_unknown() -> None:
    table = PriceTable.from_dict({"telephony": {"none": {"per_minute": 0}}, "livekit": {"none": {"per_minute": 0}}})
    cost = price_call(table, call_usage([("hi", "Hello.")], profile=ProviderProfile.text(), duration_s=10))
    assert cost.unknown == ["compute:switchboard"]


def test_the_shipped_price_table_loads_and_bad_ones_are_refused() -> None:
    table = PriceTable.load(PRICES)
    assert ("openai", "gpt-4o-mini") in table.llm
    assert "deepgram" in table.stt
    with pytest.raises(PriceError):
        PriceTable.from_dict({"stt": {"deepgram": {"per_minute": -1}}})
    with pytest.raises(PriceError):
        PriceTable.from_dict({"tts": {"cartesia": {"per_character": "cheap"}}})


def test_segments_and_rollup_by_intent_hour_and_segment() -> None:
    assert segments_of(["billing", "billing", "scheduling", "scheduling"]) == [
        "router>billing",
        "router>billing",
        "billing>scheduling",
        "billing>scheduling",
    ]
    rollup = CostRollup()
    rollup.add(
        hour=9,
        turn_costs=[0.01, 0.02, 0.03],
        turn_intents=["billing", "billing", "scheduling"],
        turn_agents=["billing", "billing", "scheduling"],
        turn_segments=segments_of(["billing", "billing", "scheduling"]),
        unknown=False,
    )
    rollup.add(
        hour=9,
        turn_costs=[0.04],
        turn_intents=["billing"],
        turn_agents=["billing"],
        turn_segments=["router>billing"],
        unknown=True,
    )
    assert rollup.calls == 2
    assert rollup.unknown_calls == 1
    assert rollup.per_call_by_intent() == pytest.approx({"billing": 0.035, "scheduling": 0.03})
    assert rollup.per_call_by_hour() == pytest.approx({"09": 0.05})
    assert rollup.by_segment == pytest.approx({"router>billing": 0.07, "billing>scheduling": 0.03})
