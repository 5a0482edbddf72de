"""Alerts: the seed's thresholds over a rolling window, the in-app stream, and the Slack-compatible webhook."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest

from orchestrator.telemetry.alerts import AlertEvaluator, AlertStream, Thresholds, WebhookNotifier

pytestmark = pytest.mark.unit

SMALL = Thresholds(window=10, min_calls=5, cost_per_call_usd_max=0.10)


def feed(ev: AlertEvaluator, n: int, *, success: bool = True, escalated: bool = False, ms: float = 100) -> list[str]:
    rules = []
    for i in range(n):
        for a in ev.observe_call(
            call_id=f"c{i}", success=success, escalated=escalated, turn_latencies_ms=[ms], cost_usd=0.01
        ):
            rules.append(a.rule + (":resolved" if a.resolved else ""))
    return rules


def test_rate_rules_fire_once_and_resolve() -> None:
    ev = AlertEvaluator(SMALL)
    assert feed(ev, 5) == []
    assert feed(ev, 3, success=False) == ["success_rate"]
    assert feed(ev, 2, success=False) == []
    assert feed(ev, 10) == ["success_rate:resolved"]


def test_latency_and_escalation_thresholds() -> None:
    ev = AlertEvaluator(SMALL)
    assert feed(ev, 5, ms=600) == ["latency_p95"]
    ev = AlertEvaluator(SMALL)
    rules = feed(ev, 5, escalated=True)
    assert rules == ["escalation_rate"]
    (alert,) = [a for a in ev.stream.recent() if a.rule == "escalation_rate"]
    assert "maximum 20%" in alert.message
    assert alert.value == 1.0


def test_cost_over_budget_and_dead_letters_alert_every_time() -> None:
    ev = AlertEvaluator(SMALL)
    alerts = ev.observe_call(call_id="pricey", success=True, escalated=False, turn_latencies_ms=[], cost_usd=0.5)
    assert [a.rule for a in alerts] == ["cost_per_call"]
    assert alerts[0].call_id == "pricey"
    assert ev.observe_call(call_id="unknown", success=True, escalated=False, turn_latencies_ms=[], cost_usd=None) == []
    dead = ev.observe_dead_letter(call_id="c9", error="RuntimeError: caller said 555 010 0002", attempts=3)
    assert dead.severity == "critical"
    assert "0002" not in dead.message
    assert "RuntimeError" in dead.message


async def test_stream_subscribers_get_alerts_and_a_slow_one_never_blocks() -> None:
    stream = AlertStream(subscriber_buffer=1)
    ev = AlertEvaluator(SMALL, stream=stream)
    received = []

    async def consume() -> None:
        async for alert in stream.subscribe():
            received.append(alert.rule)
            return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    for _ in range(5):
        ev.observe_dead_letter(call_id="c", error="x", attempts=3)
    await asyncio.wait_for(task, 1)
    assert received == ["dead_letter"]
    assert len(stream.recent()) == 5


async def test_webhook_posts_a_slack_payload() -> None:
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, text="ok")

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    notifier = WebhookNotifier("http://127.0.0.1:9/hook", client=client)
    ev = AlertEvaluator(SMALL, notifier=notifier)
    ev.observe_dead_letter(call_id="c1", error="boom", attempts=3)
    await notifier.flush()
    await client.aclose()
    assert notifier.sent == 1
    assert bodies[0]["text"].startswith(":rotating_light: Switchboard critical: call c1")
    assert bodies[0]["blocks"][0]["type"] == "section"


async def test_a_dead_webhook_never_blocks_the_caller() -> None:
    reached = asyncio.Event()
    never = asyncio.Event()  # the webhook takes the request and never answers

    async def handler(request: httpx.Request) -> httpx.Response:
        reached.set()
        await never.wait()
        return httpx.Response(500)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    notifier = WebhookNotifier("http://127.0.0.1:9/hook", client=client)
    ev = AlertEvaluator(SMALL, notifier=notifier)
    ev.observe_dead_letter(call_id="c1", error="boom", attempts=3)
    # The caller got its alert back before the webhook was even asked: delivery is the background task's.
    assert len(ev.stream.recent()) == 1
    assert not reached.is_set()
    task = notifier._task
    assert task is not None
    try:
        async with asyncio.timeout(30):
            await reached.wait()
        assert not task.done(), "the delivery still waits on the dead webhook, and nobody waits on it"
        assert (notifier.sent, notifier.failed) == (0, 0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()
