"""The run context injected into every node: tenant systems, classifier, prompts, models, clock."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol, cast
from zoneinfo import ZoneInfo

from langchain_core.language_models import BaseChatModel

from agents.ports import AsyncIntentClassifier, IntentClassifier, IntentPrediction, Tenant
from agents.prompts import Prompts


class ModelRouter(Protocol):
    """Chooses a chat model per turn from the routing policy (see prompts/routing.yaml)."""

    def model_for(self, intent: str, confidence: float, failures: int = 0) -> BaseChatModel: ...

    def router_model(self) -> BaseChatModel: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class IntentPrefetch:
    """Classifications started before the `route` node needs them, keyed by (call, words).

    The session adapter starts one as soon as a turn's words are known, and `supervise` as soon as it knows
    the turn goes on to `route` (a no-op if already started), so the model runs on another core while the
    turn's checkpoint is read and LangGraph moves through its steps. The classifier is deterministic, so a
    result is right for any turn of that call with the same words; at most `limit` are kept, oldest out first.
    """

    def __init__(self, classifier: IntentClassifier, limit: int = 1024) -> None:
        self._classifier = classifier
        # A classifier with its own way off the event loop (a child process) is asked that way.
        aclassify = getattr(classifier, "aclassify", None)
        self._off_loop = cast(AsyncIntentClassifier, classifier) if callable(aclassify) else None
        self._limit = limit
        self._pending: OrderedDict[tuple[str, str], asyncio.Future[IntentPrediction]] = OrderedDict()

    def start(self, key: tuple[str, str]) -> None:
        if key in self._pending:
            return
        self._pending[key] = asyncio.ensure_future(self._classify(key[1]))
        while len(self._pending) > self._limit:
            self._pending.popitem(last=False)[1].cancel()

    def discard(self, key: tuple[str, str]) -> None:
        """Drop a started classification nobody will ask for (the words it was started on have changed)."""
        pending = self._pending.pop(key, None)
        if pending is not None:
            pending.cancel()

    def started(self, key: tuple[str, str]) -> bool:
        """Whether a classification of `key` is under way (or done) and not yet taken."""
        return key in self._pending

    async def shared(self, key: tuple[str, str]) -> IntentPrediction:
        """The classification of `key`, started now if it is not under way, and left for `result` to take."""
        self.start(key)
        # Shielded: a turn cancelled while it waits must not cancel the classification `route` may still take.
        return await asyncio.shield(self._pending[key])

    async def result(self, key: tuple[str, str]) -> IntentPrediction:
        """The started classification of `key`, or a new one. Off the event loop either way: in the
        classifier's own process if it has one (`aclassify`), else on a thread (onnxruntime releases the GIL)."""
        pending = self._pending.pop(key, None)
        if pending is None:
            return await self._classify(key[1])
        return await pending

    async def _classify(self, text: str) -> IntentPrediction:
        if self._off_loop is not None:
            return await self._off_loop.aclassify(text)
        return await asyncio.to_thread(self._classifier.classify, text)


@dataclass
class AgentContext:
    """Dependencies of one graph run; the worker builds it once per process and shares it across calls.

    Attributes:
        tenant: the tenant's systems (customers, scheduling, billing, support, human desk).
        classifier: the local intent classifier.
        prompts: the prompts folder in use.
        models: chat models by routing policy; None runs the deterministic flows (embedded default).
        timezone: the tenant's local time zone, used to speak and parse times.
        clock: current time (tests and evals pin it).
        router_threshold: below this classifier confidence, the LLM (if any) decides the intent.
        switch_threshold: confidence needed to leave an active specialist for another topic.
    """

    tenant: Tenant
    classifier: IntentClassifier
    prompts: Prompts
    models: ModelRouter | None = None
    timezone: str = "America/New_York"
    clock: Callable[[], datetime] = field(default=_utc_now)
    router_threshold: float = 0.55
    switch_threshold: float = 0.7
    max_verification_attempts: int = 3
    max_llm_tool_rounds: int = 4
    intents: IntentPrefetch = field(init=False)

    def __post_init__(self) -> None:
        self.intents = IntentPrefetch(self.classifier)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def now(self) -> datetime:
        return self.clock().astimezone(self.tz)

    def today(self) -> date:
        return self.now().date()
