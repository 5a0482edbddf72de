"""The model routing policy: tiers per intent, confidence and failures; validation; provider choice; registry."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from anthropic.resources.messages.messages import DEPRECATED_MODELS
from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from agents.testing import ScriptedChatModel
from orchestrator.config import PROMPTS_DIR, Settings
from orchestrator.providers.llm import (
    AnthropicChatModel,
    ModelRegistry,
    ModelSpec,
    OpenAIChatModel,
    RoutingPolicy,
    RoutingPolicyError,
    build_chat_model,
)

pytestmark = pytest.mark.unit

SHIPPED = PROMPTS_DIR / "routing.yaml"


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]  # test overrides by field name


OPENAI = {"openai_api_key": SecretStr("sk-test")}
ANTHROPIC = {"anthropic_api_key": SecretStr("sk-ant-test")}


@pytest.fixture(scope="module")
def policy() -> RoutingPolicy:
    return RoutingPolicy.load(SHIPPED)


@pytest.mark.parametrize(
    ("intent", "confidence", "failures", "tier"),
    [
        ("scheduling", 0.95, 0, "small"),
        ("billing", 0.80, 0, "small"),
        ("support", 0.70, 0, "small"),  # the boundary is inclusive
        ("support", 0.69, 0, "large"),  # low confidence
        ("billing", 0.30, 0, "large"),
        ("escalation", 0.99, 0, "large"),  # escalation always gets the strong model
        ("scheduling", 0.95, 1, "small"),  # one failure is not a pattern
        ("scheduling", 0.95, 2, "large"),  # repeated failures
        ("out_of_scope", 0.90, 0, "large"),  # no rule: the default
    ],
)
def test_shipped_policy_tiers(policy: RoutingPolicy, intent: str, confidence: float, failures: int, tier: str) -> None:
    assert policy.tier_for(intent, confidence, failures=failures) == tier


def test_shipped_policy_router_tier_and_models(policy: RoutingPolicy) -> None:
    assert policy.router_tier == "small"
    assert policy.tiers["small"].models == {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}


def test_shipped_policy_names_no_deprecated_anthropic_model(policy: RoutingPolicy) -> None:
    # anthropic's SDK warns on deprecated models, and warnings are errors in tests and noise in prod.
    names = {tier.models.get("anthropic") for tier in policy.tiers.values()}
    assert not names & set(DEPRECATED_MODELS)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    return path


VALID = """
tiers:
  small: {models: {openai: gpt-4o-mini}}
  large: {provider: anthropic, models: {openai: gpt-4o, anthropic: claude-sonnet-4-6}}
rules:
  - {tier: small, when: {intents: [billing]}}
default_tier: large
router_tier: small
"""


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (VALID.replace("gpt-4o-mini}", "gpt-4o-mini}, temprature: 0.3"), "tiers.small.temprature"),
        (VALID.replace("{openai: gpt-4o-mini}", "{}"), "tiers.small.models"),
        (VALID.replace("[billing]", "[biling]"), "rules.0.when.intents.0"),
        (VALID.replace("default_tier: large", "default_tier: huge"), "default_tier"),
        (VALID.replace("{tier: small,", "{tier: medium,"), "rules.0.tier"),
        (VALID.replace("provider: anthropic", "provider: mistral"), "tiers.large.provider"),
        (VALID.replace("router_tier: small\n", ""), "router_tier"),
        (
            VALID.replace("models: {openai: gpt-4o-mini}", "provider: anthropic, models: {openai: gpt-4o-mini}"),
            "tiers.small",
        ),
    ],
)
def test_an_invalid_policy_names_the_file_and_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(RoutingPolicyError) as caught:
        RoutingPolicy.load(path)

    assert str(path) in str(caught.value)
    assert field in str(caught.value)


def test_broken_yaml_and_missing_files_name_the_file(tmp_path: Path) -> None:
    broken = write(tmp_path, "tiers: [unclosed\n")
    with pytest.raises(RoutingPolicyError, match="not valid YAML") as caught:
        RoutingPolicy.load(broken)
    assert str(broken) in str(caught.value)

    with pytest.raises(RoutingPolicyError, match="cannot read"):
        RoutingPolicy.load(tmp_path / "missing.yaml")

    with pytest.raises(RoutingPolicyError, match="mapping"):
        RoutingPolicy.load(write(tmp_path, "- just\n- a list\n"))


def test_provider_is_whichever_has_credentials(policy: RoutingPolicy) -> None:
    assert policy.spec_for("small", settings(**OPENAI)).provider == "openai"
    assert policy.spec_for("small", settings(openai_base_url="http://127.0.0.1:1/v1")).provider == "openai"
    spec = policy.spec_for("large", settings(**ANTHROPIC))
    assert (spec.provider, spec.model) == ("anthropic", "claude-sonnet-4-6")
    # OpenAI first when both are configured.
    assert policy.spec_for("small", settings(**OPENAI, **ANTHROPIC)).provider == "openai"


def test_a_tier_naming_an_unconfigured_provider_falls_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = RoutingPolicy.load(write(tmp_path, VALID))

    with caplog.at_level(logging.WARNING, logger="orchestrator.providers.llm"):
        spec = policy.spec_for("large", settings(**OPENAI))

    assert (spec.provider, spec.model) == ("openai", "gpt-4o")
    assert "ANTHROPIC_API_KEY" in caplog.text
    # With the key present the tier gets the provider it asked for.
    assert policy.spec_for("large", settings(**OPENAI, **ANTHROPIC)).provider == "anthropic"


def test_a_tier_without_a_model_for_the_configured_provider_fails(tmp_path: Path) -> None:
    policy = RoutingPolicy.load(write(tmp_path, VALID))

    with pytest.raises(RoutingPolicyError, match=r"tiers\.small\.models has no 'anthropic' model"):
        policy.spec_for("small", settings(**ANTHROPIC))


def test_build_chat_model_configures_each_vendor() -> None:
    s = settings(**OPENAI, **ANTHROPIC, openai_base_url="http://127.0.0.1:9/v1", llm_timeout_s=3.5)

    oa = build_chat_model(ModelSpec(provider="openai", model="gpt-4o-mini", max_retries=2, temperature=0.1), s)
    assert isinstance(oa, OpenAIChatModel)
    assert (oa.model_name, oa.openai_api_base, oa.request_timeout, oa.max_retries) == (
        "gpt-4o-mini",
        "http://127.0.0.1:9/v1",
        3.5,
        2,
    )
    assert oa.stream_usage is True
    assert oa.stream_chunk_timeout == 3.5

    an = build_chat_model(ModelSpec(provider="anthropic", model="claude-haiku-4-5", max_tokens=300), s)
    assert isinstance(an, AnthropicChatModel)
    assert (an.model, an.default_request_timeout, an.max_retries, an.max_tokens) == ("claude-haiku-4-5", 3.5, 1, 300)
    assert an.anthropic_api_key.get_secret_value() == "sk-ant-test"


def test_registry_is_none_without_an_llm() -> None:
    assert ModelRegistry.from_settings(settings()) is None


def test_registry_builds_one_model_per_tier_lazily() -> None:
    built: list[ModelSpec] = []

    def factory(spec: ModelSpec, _: Settings) -> BaseChatModel:
        built.append(spec)
        return ScriptedChatModel([], model=spec.model)

    registry = ModelRegistry.from_settings(settings(**ANTHROPIC, routing_policy=SHIPPED), factory=factory)
    assert registry is not None
    assert built == []  # nothing built until asked

    small = registry.model_for("billing", 0.9)
    assert registry.model_for("scheduling", 0.99) is small
    assert registry.router_model() is small
    large = registry.model_for("escalation", 0.99)
    assert large is registry.model_for("billing", 0.9, failures=3)
    assert large is not small
    assert [spec.model for spec in built] == ["claude-haiku-4-5", "claude-sonnet-4-6"]


def test_registry_fails_at_start_up_on_a_bad_policy(tmp_path: Path) -> None:
    bad = write(tmp_path, "tiers: {}\ndefault_tier: x\nrouter_tier: x\n")

    with pytest.raises(RoutingPolicyError, match="routing.yaml"):
        ModelRegistry.from_settings(settings(**OPENAI, routing_policy=bad))
