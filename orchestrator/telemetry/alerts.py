"""Alerts: thresholds from the seed's table over a rolling window, an in-app stream, a Slack-compatible webhook."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from orchestrator.stats import percentile

log = logging.getLogger(__name__)

Rule = Literal["success_rate", "latency_p95", "escalation_rate", "dead_letter", "cost_per_call", "verification_lockout"]


@dataclass(frozen=True)
class Thresholds:
    """When to alert. The rates are judged over the last `window` calls, once `min_calls` have finished.

    The same numbers are in `deploy/prometheus/alerts.yml` (there over 15 minutes of counters).
    """

    success_rate_min: float = 0.95
    latency_p95_ms_max: float = 500.0
    escalation_rate_max: float = 0.20
    dead_letters_max: int = 0
    cost_per_call_usd_max: float = 0.25
    window: int = 200
    min_calls: int = 20


@dataclass(frozen=True)
class Alert:
    """One alert: which rule, what was measured, against what."""

    rule: Rule
    message: str
    value: float
    threshold: float
    severity: Literal["warning", "critical"] = "warning"
    call_id: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    resolved: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "value": self.value,
            "threshold": self.threshold,
            "call_id": self.call_id,
            "at": self.at.isoformat(),
            "resolved": self.resolved,
        }

    def slack_payload(self) -> dict[str, Any]:
        """A body Slack's incoming webhooks (and compatible ones: Mattermost, Rocket.Chat) accept."""
        icon = (
            ":white_check_mark:"
            if self.resolved
            else (":rotating_light:" if self.severity == "critical" else ":warning:")
        )
        state = "resolved" if self.resolved else self.severity
        return {
            "text": f"{icon} Switchboard {state}: {self.message}",
            "blocks": [
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"{icon} *{self.rule}* ({state})\n{self.message}"},
                },
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": f"value {self.value:g} · threshold {self.threshold:g}"
                            f" · {self.at:%Y-%m-%d %H:%M:%S} UTC",
                        }
                    ],
                },
            ],
        }


class AlertStream:
    """The in-app alert stream: recent alerts for the console, and live subscribers. Never blocks a publisher."""

    def __init__(self, keep: int = 500, subscriber_buffer: int = 100) -> None:
        self._recent: deque[Alert] = deque(maxlen=keep)
        self._subscribers: set[asyncio.Queue[Alert]] = set()
        self._buffer = subscriber_buffer

    def publish(self, alert: Alert) -> None:
        self._recent.append(alert)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(alert)
            except asyncio.QueueFull:
                # A slow console loses alerts, the call path never waits for it.
                pass

    def recent(self) -> list[Alert]:
        return list(self._recent)

    async def subscribe(self) -> AsyncIterator[Alert]:
        """Alerts as they are published (for an SSE endpoint)."""
        queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=self._buffer)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)


class WebhookNotifier:
    """POSTs alerts to a Slack-compatible incoming webhook from a background task with a bounded queue.

    `notify` only enqueues; delivery failures are logged and dropped after one retry, so a dead or slow
    webhook never holds a call.
    """

    def __init__(self, url: str, *, client: httpx.AsyncClient | None = None, timeout_s: float = 3.0) -> None:
        self.url = url
        self._client = client
        self._owns_client = client is None
        self._timeout = timeout_s
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=100)
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0

    def notify(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.failed += 1
            return
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._drain(), name="alert-webhook")
            except RuntimeError:
                pass  # no loop (sync caller): the alert stays queued for the next notify from a loop

    async def _drain(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        while not self._queue.empty():
            alert = self._queue.get_nowait()
            for attempt in range(2):
                try:
                    response = await self._client.post(self.url, json=alert.slack_payload())
                    response.raise_for_status()
                    self.sent += 1
                    break
                except Exception as exc:
                    if attempt:
                        self.failed += 1
                        log.warning("alert webhook failed (%s); alert %s dropped", type(exc).__name__, alert.rule)

    async def flush(self) -> None:
        """Wait for queued alerts to be delivered (or dropped)."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    async def aclose(self) -> None:
        await self.flush()
        if self._owns_client and self._client is not None:
            await self._client.aclose()


@dataclass
class _CallSample:
    success: bool
    escalated: bool
    latencies: list[float]


class AlertEvaluator:
    """Applies `Thresholds` to finished calls and dead letters; publishes to the stream and the webhook.

    A rate rule fires once when it crosses its threshold and again (as resolved) when it recovers, so a
    bad hour is one message, not one per call. Dead letters and over-budget calls alert every time.
    """

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        stream: AlertStream | None = None,
        notifier: WebhookNotifier | None = None,
        metrics: Any = None,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self.stream = stream or AlertStream()
        self.notifier = notifier
        self.metrics = metrics
        self._window: deque[_CallSample] = deque(maxlen=self.thresholds.window)
        self._firing: set[Rule] = set()

    def _emit(self, alert: Alert) -> None:
        try:
            self.stream.publish(alert)
            if self.metrics is not None and not alert.resolved:
                self.metrics.alerts.add(1, {"rule": alert.rule})
            if self.notifier is not None:
                self.notifier.notify(alert)
        except Exception:
            log.warning("alert delivery failed", exc_info=True)

    def observe_call(
        self,
        *,
        call_id: str,
        success: bool,
        escalated: bool,
        turn_latencies_ms: Iterable[float],
        cost_usd: float | None,
    ) -> list[Alert]:
        """Add a finished call to the window and return the alerts it raised (or resolved)."""
        th = self.thresholds
        out: list[Alert] = []
        self._window.append(_CallSample(success, escalated, list(turn_latencies_ms)))
        if cost_usd is not None and cost_usd > th.cost_per_call_usd_max:
            out.append(
                Alert(
                    "cost_per_call",
                    f"call {call_id} cost ${cost_usd:.4f}, over the ${th.cost_per_call_usd_max:.2f} budget",
                    round(cost_usd, 6),
                    th.cost_per_call_usd_max,
                    call_id=call_id,
                )
            )
        if len(self._window) >= th.min_calls:
            calls = len(self._window)
            success_rate = sum(s.success for s in self._window) / calls
            escalation_rate = sum(s.escalated for s in self._window) / calls
            p95 = percentile((ms for s in self._window for ms in s.latencies), 95)
            out.extend(
                self._rate(
                    "success_rate",
                    success_rate < th.success_rate_min,
                    f"call success rate {success_rate:.1%} over the last {calls} calls"
                    f" (minimum {th.success_rate_min:.0%})",
                    success_rate,
                    th.success_rate_min,
                    "critical",
                )
            )
            out.extend(
                self._rate(
                    "latency_p95",
                    p95 > th.latency_p95_ms_max,
                    f"P95 turn latency {p95:.0f} ms over the last {calls} calls"
                    f" (maximum {th.latency_p95_ms_max:.0f} ms)",
                    p95,
                    th.latency_p95_ms_max,
                    "warning",
                )
            )
            out.extend(
                self._rate(
                    "escalation_rate",
                    escalation_rate > th.escalation_rate_max,
                    f"escalation rate {escalation_rate:.1%} over the last {calls} calls"
                    f" (maximum {th.escalation_rate_max:.0%})",
                    escalation_rate,
                    th.escalation_rate_max,
                    "warning",
                )
            )
        for alert in out:
            self._emit(alert)
        return out

    def _rate(
        self,
        rule: Rule,
        bad: bool,
        message: str,
        value: float,
        threshold: float,
        severity: Literal["warning", "critical"],
    ) -> list[Alert]:
        if bad and rule not in self._firing:
            self._firing.add(rule)
            return [Alert(rule, message, round(value, 4), threshold, severity)]
        if not bad and rule in self._firing:
            self._firing.discard(rule)
            return [Alert(rule, message, round(value, 4), threshold, severity, resolved=True)]
        return []

    def observe_dead_letter(self, *, call_id: str, error: str, attempts: int) -> Alert:
        """Any dead letter alerts (the error is reduced to its type: it may quote caller content)."""
        kind = error.split(":", 1)[0][:60]
        alert = Alert(
            "dead_letter",
            f"call {call_id} went to the dead-letter stream after {attempts} attempts ({kind})",
            1,
            self.thresholds.dead_letters_max,
            "critical",
            call_id=call_id,
        )
        self._emit(alert)
        return alert

    def observe_verification_lockout(self, *, subject: str, failures: int, call_id: str) -> Alert:
        """A caller ID or an account reached the failed-verification limit (someone may be guessing ZIP codes).

        Args:
            subject: What is locked, phone numbers masked ("caller ***0002", "account NW-1002").
            failures: Failed checks counted in the window.
            call_id: The call whose failure reached the limit.
        """
        alert = Alert(
            "verification_lockout",
            f"verification locked for {subject} after {failures} failed checks (call {call_id})",
            failures,
            failures,
            "critical",
            call_id=call_id,
        )
        self._emit(alert)
        return alert
