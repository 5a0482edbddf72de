"""Services: builds everything a process needs to run calls (store, tenant, classifier, models, graph)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.context import AgentContext
from agents.graph import build_graph
from agents.ports import IntentClassifier, Tenant
from agents.prompts import Prompts
from orchestrator.config import Settings, get_settings
from orchestrator.domain import build_tenant, create_schema, open_engine, rekey_clear_keys, seed_demo
from orchestrator.store.checkpoints import LatestCheckpointCache, open_checkpointer

log = logging.getLogger(__name__)


@dataclass
class Services:
    """One process's shared, long-lived dependencies. Build with `Services.open`, close with `aclose`."""

    settings: Settings
    engine: AsyncEngine
    tenant: Tenant
    classifier: IntentClassifier
    prompts: Prompts
    checkpointer: BaseCheckpointSaver[Any]
    graph: CompiledStateGraph[Any, Any, Any, Any]
    context: AgentContext
    _stack: AsyncExitStack

    @classmethod
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        classifier: IntentClassifier | None = None,
        models: Any = None,
        seed: bool = True,
        prompts: Prompts | None = None,
        graph: CompiledStateGraph[Any, Any, Any, Any] | None = None,
        many_calls: bool = False,
    ) -> Services:
        """Open the store, seed the demo tenant if needed, load the classifier and compile the graph.

        Args:
            settings: defaults to the environment's.
            clock: pins "now" for tests and evals.
            classifier: overrides the local classifier (tests), or reuses one loaded ahead of time (the
                agent worker's prewarm).
            models: overrides the model registry (scripted models in tests); None builds it from settings.
            seed: seed the demo tenant (idempotent).
            prompts: prompts loaded ahead of time; None loads them from `settings.prompts_dir`.
            graph: the call graph compiled ahead of time without a checkpointer (`build_graph()`); a copy
                bound to this store's checkpointer is used. None compiles it here.
            many_calls: this process runs many calls at once, so the shipped classifier runs in a child
                process (`ProcessIntentClassifier`) unless `settings.classifier_process` says otherwise.
        """
        settings = settings or get_settings()
        stack = AsyncExitStack()
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            engine = open_engine(settings.sqlalchemy_url)
            stack.push_async_callback(engine.dispose)
            await create_schema(engine)
            record_key = settings.record_key.get_secret_value()
            await rekey_clear_keys(engine, record_key)
            context_clock = clock
            tenant = build_tenant(engine, clock=clock, timezone=settings.tenant_timezone, record_key=record_key)
            if seed:
                today = (clock() if clock else datetime.now().astimezone()).astimezone(_tz(settings)).date()
                await seed_demo(engine, today=today)
            if classifier is None:
                # Lazy: onnxruntime and the tokenizer load only where a call needs the classifier.
                from orchestrator.providers.intent import load_classifier

                classifier = load_classifier()
                if settings.classifier_process if settings.classifier_process is not None else many_calls:
                    # Lazy, as above: the classifier's child process brings in onnxruntime too.
                    from orchestrator.providers.intent_process import ProcessIntentClassifier

                    in_child = ProcessIntentClassifier(classifier)
                    await in_child.start()  # classifications run on a thread here until the child is ready
                    stack.push_async_callback(in_child.aclose)
                    classifier = in_child
            if models is None and settings.llm_configured:
                # Lazy: the vendors' LangChain chat models load only when an LLM is configured.
                from orchestrator.providers.llm import ModelRegistry

                models = ModelRegistry.from_settings(settings)
            if prompts is None:
                prompts = Prompts.load(settings.prompts_dir)
            # The latest checkpoint of each call this process runs is answered from memory (write-through).
            checkpointer = LatestCheckpointCache(await open_checkpointer(settings, stack))
            graph = build_graph(checkpointer) if graph is None else graph.copy(update={"checkpointer": checkpointer})
            context = AgentContext(
                tenant=tenant,
                classifier=classifier,
                prompts=prompts,
                models=models,
                timezone=settings.tenant_timezone,
                router_threshold=settings.router_threshold,
            )
            if context_clock is not None:
                context.clock = context_clock
        except BaseException:
            await stack.aclose()
            raise
        return cls(
            settings=settings,
            engine=engine,
            tenant=tenant,
            classifier=classifier,
            prompts=prompts,
            checkpointer=checkpointer,
            graph=graph,
            context=context,
            _stack=stack,
        )

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def __aenter__(self) -> Services:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


def _tz(settings: Settings) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(settings.tenant_timezone)
