"""LLM-as-judge rubrics: run only when an LLM key is configured; otherwise reported as skipped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from evals.schema import Scenario
from evals.scorers import Check, Observation
from orchestrator.config import Settings

_SYSTEM = (
    "You grade one contact-centre call against one rubric. Read the transcript and answer on the first line "
    "PASS or FAIL, then one sentence saying why. Judge only what the rubric asks."
)


async def judge_rubrics(settings: Settings, scenario: Scenario, obs: Observation) -> list[Check]:
    """One check per rubric; with no key configured the rubrics pass as skipped (deterministic checks still run)."""
    if not settings.llm_configured:
        return [
            Check(f"rubric.{i + 1}", True, "skipped: no LLM key configured")
            for i in range(len(scenario.expect.rubrics))
        ]
    model = _judge_model(settings)
    if model is None:
        return []
    return await grade_rubrics(model, scenario.expect.rubrics, scenario, obs.turns, "rubric")


async def judge_reply_rubrics(
    settings: Settings,
    rubrics: Sequence[str],
    scenario: Scenario,
    obs: Observation,
    judge: BaseChatModel | None = None,
) -> list[Check]:
    """The reply policy's rubrics on every scenario (`rubric.reply.N`) by `judge`, else by the configured model.

    With neither (no key configured) there are no checks: the policy's phrase and length rules still run.
    """
    if not rubrics:
        return []
    model = judge if judge is not None else (_judge_model(settings) if settings.llm_configured else None)
    if model is None:
        return []
    return await grade_rubrics(model, rubrics, scenario, obs.turns, "rubric.reply")


def _judge_model(settings: Settings) -> BaseChatModel | None:
    # Lazy: the vendors' LangChain chat models load only when a judge runs.
    from orchestrator.providers.llm import ModelRegistry

    registry = ModelRegistry.from_settings(settings)
    return registry.tier_model("large") if registry is not None else None


async def grade_rubrics(
    model: BaseChatModel, rubrics: Sequence[str], scenario: Scenario, turns: Sequence[dict[str, Any]], prefix: str
) -> list[Check]:
    """Ask `model` about each rubric in turn; its first word (PASS or FAIL) is the verdict, the rest the reason."""
    transcript = "\n".join(f"CALLER: {t['caller']}\nAGENT ({t['agent_name']}): {t['agent']}" for t in turns)
    checks = []
    for i, rubric in enumerate(rubrics):
        prompt = f"Caller persona: {scenario.persona}\nGoal: {scenario.goal}\nRubric: {rubric}\n\n{transcript}"
        try:
            answer = await model.ainvoke([SystemMessage(_SYSTEM), HumanMessage(prompt)])
        except Exception as exc:  # noqa: BLE001 - a judge outage fails the rubric with the reason, not the run
            checks.append(Check(f"{prefix}.{i + 1}", False, f"judge unavailable: {type(exc).__name__}"))
            continue
        text = answer.content if isinstance(answer.content, str) else str(answer.content)
        verdict = text.strip().upper().startswith("PASS")
        checks.append(Check(f"{prefix}.{i + 1}", verdict, text.strip()[:300]))
    return checks
