"""Runs scenarios as text calls, each on its own fresh tenant, in parallel (bounded) and with timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.language_models import BaseChatModel

from agents.ports import IntentClassifier
from evals.cost import cost_usd
from evals.dbstate import snapshot
from evals.replies import ReplyPolicy, check_replies, default_reply_policy, findings_to_checks
from evals.schema import Scenario, Suite
from evals.scorers import Check, Observation, score
from evals.simulator import DeterministicCaller, LLMCaller, resolve_caller
from orchestrator.config import Settings, load_settings
from orchestrator.runtime import Services
from orchestrator.session.text import TextCall

# Evals run on a pinned Tuesday afternoon in New York, like the flow tests: the seeded slots, invoices
# and the active outage's ETA are relative to it, so every run sees the same tenant.
EVAL_NOW = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
Status = Literal["passed", "failed", "xfail", "xpass"]


@dataclass
class RunConfig:
    """How to run: which prompts, how many trials, how many calls at once, which simulator.

    Attributes:
        prompts_dir: the prompts folder (a `--prompts` version).
        repeat: trials per scenario (pass^k uses k = repeat).
        concurrency: calls in flight at once.
        timeout_s: overrides every scenario's own timeout when set.
        simulator: "auto" (LLM-driven when a key is configured), "deterministic" or "llm".
        now: the pinned clock.
        settings: extra settings overrides (tests).
        reply_policy: the wording rules every reply is checked against (evals/reply_policy.yaml when None).
        judge: the chat model that grades the reply policy's rubrics; None uses the configured large tier
            when a key is set, and skips them otherwise.
    """

    prompts_dir: Path | None = None
    repeat: int = 1
    concurrency: int = 4
    timeout_s: float | None = None
    simulator: Literal["auto", "deterministic", "llm"] = "auto"
    now: datetime = EVAL_NOW
    settings: dict[str, Any] = field(default_factory=dict)
    reply_policy: ReplyPolicy | None = None
    judge: BaseChatModel | None = None


@dataclass
class TrialResult:
    """One scenario trial: its verdict, checks and what the call looked like."""

    suite: str
    scenario: str
    trial: int
    status: Status
    checks: list[Check]
    turns: list[dict[str, Any]]
    outcome: str
    escalation_reason: str | None
    routes: list[str]
    tool_events: list[dict[str, Any]]
    cost_usd: float
    duration_s: float
    expect_failure: str | None = None
    expected_outcome: str | None = None
    expected_escalation: bool | None = None
    # Replies that break the reply policy: {turn (0-based), rule, detail}.
    findings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """The call met every expectation (whatever the scenario predicted)."""
        return all(c.ok for c in self.checks)

    @property
    def counts_as_failure(self) -> bool:
        """A failure for CI: an unexpected failure, or a known-bad scenario that now passes."""
        return self.status in {"failed", "xpass"}

    @property
    def why(self) -> str:
        """The reasons it failed, one per failing check."""
        if self.status == "xpass":
            return f"expected to fail ({self.expect_failure}) but passed: mark it fixed"
        return "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.ok)

    @property
    def latencies(self) -> list[float]:
        return [float(t["latency_ms"]) for t in self.turns]


@dataclass
class RunResult:
    """All trials of one run."""

    trials: list[TrialResult]
    suites: list[str]
    repeat: int
    duration_s: float
    prompts_dir: str


def _settings_for(config: RunConfig, data_dir: Path) -> Settings:
    overrides: dict[str, Any] = {"data_dir": data_dir, **config.settings}
    if config.prompts_dir is not None:
        overrides["prompts_dir"] = config.prompts_dir
        if (config.prompts_dir / "routing.yaml").is_file():
            overrides["routing_policy"] = config.prompts_dir / "routing.yaml"
    return load_settings(**overrides)


@contextlib.contextmanager
def _usage() -> Iterator[dict[str, Any]]:
    # Counts tokens of every chat model call made in this task (contextvars follow the session's tasks).
    with get_usage_metadata_callback() as cb:
        out: dict[str, Any] = {}
        yield out
        out.update(cb.usage_metadata)


async def _drive(call: TextCall, scenario: Scenario, simulator: Any, progress: list[int]) -> None:
    if scenario.turns is not None:
        for utterance in scenario.turns:
            progress[0] += 1
            await call.say(utterance)
            state = await call.state()
            if state.get("ended") or state.get("outcome") == "escalated":
                break
        return
    reply: str | None = None
    current: dict[str, Any] = {}
    while True:
        utterance = await simulator.next(current, reply)
        if utterance is None:
            return
        progress[0] += 1
        record = await call.say(utterance)
        reply = record.agent
        current = await call.state()
        if current.get("ended"):
            return


async def run_trial(
    suite: str,
    scenario: Scenario,
    trial: int,
    config: RunConfig,
    classifier: IntentClassifier,
    caller_model: Callable[[Settings], Any] | None = None,
) -> TrialResult:
    """Run one scenario once on a fresh tenant and score it.

    Args:
        suite: the suite's name (for reports).
        scenario: what to run.
        trial: the trial number (0-based).
        config: the run's settings.
        classifier: the intent classifier, loaded once per run and shared.
        caller_model: builds the chat model of an LLM-driven simulated caller; None keeps it deterministic.
    """
    t0 = time.perf_counter()
    caller = resolve_caller(scenario.caller)
    timeout = config.timeout_s or scenario.timeout_s
    with tempfile.TemporaryDirectory(prefix="switchboard-eval-") as tmp:
        settings = _settings_for(config, Path(tmp))
        now = config.now
        services = await Services.open(settings, clock=lambda: now, classifier=classifier)
        try:
            before = await snapshot(services.engine)
            call = TextCall(services, caller_id=caller.caller_id)
            simulator: Any = None
            if scenario.simulate is not None:
                model = caller_model(settings) if caller_model is not None else None
                simulator = (
                    LLMCaller(scenario, caller, model) if model is not None else DeterministicCaller(scenario, caller)
                )
            progress = [0]
            error: str | None = None
            with _usage() as usage:
                try:
                    async with asyncio.timeout(timeout):
                        await _drive(call, scenario, simulator, progress)
                except TimeoutError:
                    error = f"timed out after {timeout:g} s (at caller turn {progress[0]})"
                except Exception as exc:  # noqa: BLE001 - a crashing call is a failed scenario, not a crashed run
                    error = f"the call raised {type(exc).__name__}: {exc}"
                finally:
                    with contextlib.suppress(Exception):
                        await call.aclose()
            state = dict(await call.state()) if error is None else {}
            after = await snapshot(services.engine)
            account = scenario.caller.account or (state.get("verification") or {}).get("account_id")
            balance = None
            appts: list[dict[str, Any]] = []
            if account and scenario.expect.db is not None and error is None:
                balance = (await services.tenant.billing.balance(account)).due_cents
                appts = [
                    {"appointment_id": a.appointment_id, "start": a.start.astimezone(services.context.tz).isoformat()}
                    for a in await services.tenant.scheduling.appointments(account)
                ]
            result = call.result
            if not result.errors and error is None and len(result.turns) == 0:
                error = "the call ended before the caller said anything"
            obs = Observation(
                turns=[{**t.public(), "graph_ms": t.graph_ms} for t in result.turns],
                handoffs=result.handoffs,
                outcome=result.outcome,
                escalation_reason=result.escalation_reason,
                ticket_id=result.ticket_id,
                tool_events=result.tool_events,
                interventions=result.interventions,
                resolutions=result.resolutions,
                state=state,
                before=before,
                after=after,
                call_id=call.call_id,
                account=account,
                refund_max_cents=services.tenant.billing.refund_policy().max_cents,
                balance_cents=balance,
                appointments=appts,
                error=error,
            )
            checks = score(scenario, obs)
            if result.errors and error is None:
                checks.append(Check("call", False, "session errors: " + "; ".join(result.errors)[:300]))
            policy = config.reply_policy or default_reply_policy()
            # The caller ended the call when it ended without a person taking it: its last reply is the goodbye.
            closed = bool(state.get("ended")) and obs.outcome != "escalated"
            findings = check_replies(policy, obs.turns, closed_by_caller=closed) if error is None else []
            checks.extend(findings_to_checks(findings))
            if scenario.expect.rubrics or (policy.rubrics and error is None):
                # Lazy: the judge's LangChain chat-model types load only when a rubric is graded.
                from evals.judge import judge_reply_rubrics, judge_rubrics

                if scenario.expect.rubrics:
                    checks.extend(await judge_rubrics(settings, scenario, obs))
                if error is None:
                    checks.extend(await judge_reply_rubrics(settings, policy.rubrics, scenario, obs, config.judge))
        finally:
            await services.aclose()
    ok = all(c.ok for c in checks)
    if scenario.expect_failure:
        status: Status = "xpass" if ok else "xfail"
    else:
        status = "passed" if ok else "failed"
    return TrialResult(
        suite=suite,
        scenario=scenario.id,
        trial=trial,
        status=status,
        checks=checks,
        turns=obs.turns,
        outcome=obs.outcome,
        escalation_reason=obs.escalation_reason,
        routes=obs.routes,
        tool_events=obs.tool_events,
        cost_usd=cost_usd(usage),
        duration_s=time.perf_counter() - t0,
        expect_failure=scenario.expect_failure,
        expected_outcome=scenario.expect.outcome,
        expected_escalation=scenario.expected_escalation,
        findings=[f.to_dict() for f in findings],
    )


def _llm_caller_factory(config: RunConfig) -> Callable[[Settings], Any] | None:
    if config.simulator == "deterministic":
        return None

    def build(settings: Settings) -> Any:
        if not settings.llm_configured:
            if config.simulator == "llm":
                raise RuntimeError("--simulator llm needs an LLM key (OPENAI_API_KEY or ANTHROPIC_API_KEY)")
            return None
        # Lazy: the vendors' LangChain chat models load only when an LLM is configured.
        from orchestrator.providers.llm import ModelRegistry

        registry = ModelRegistry.from_settings(settings)
        return registry.tier_model("small") if registry is not None else None

    return build


async def run_suites(
    suites: list[Suite],
    config: RunConfig,
    *,
    classifier: IntentClassifier | None = None,
    on_trial: Callable[[TrialResult], None] | None = None,
) -> RunResult:
    """Run every scenario of `suites` `config.repeat` times, at most `config.concurrency` calls at once.

    Args:
        suites: loaded suites.
        config: how to run.
        classifier: the intent classifier (loaded once here when not given).
        on_trial: called as each trial finishes (progress display).

    Returns:
        The trials in suite, scenario and trial order.
    """
    if classifier is None:
        # Lazy: onnxruntime and the tokenizer load only when no classifier is passed in.
        from orchestrator.providers.intent import load_classifier

        classifier = load_classifier()
    t0 = time.perf_counter()
    gate = asyncio.Semaphore(max(1, config.concurrency))
    factory = _llm_caller_factory(config)

    async def one(suite: str, scenario: Scenario, trial: int) -> TrialResult:
        async with gate:
            result = await run_trial(suite, scenario, trial, config, classifier, factory)
        if on_trial is not None:
            on_trial(result)
        return result

    jobs = [
        one(suite.suite, scenario, trial)
        for suite in suites
        for scenario in suite.scenarios
        for trial in range(config.repeat)
    ]
    trials = list(await asyncio.gather(*jobs))
    prompts = config.prompts_dir or load_settings().prompts_dir
    return RunResult(
        trials=trials,
        suites=[s.suite for s in suites],
        repeat=config.repeat,
        duration_s=time.perf_counter() - t0,
        prompts_dir=str(prompts),
    )
