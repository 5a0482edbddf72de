"""LLM providers: the YAML routing policy, OpenAI and Anthropic chat models, and a per-tier registry."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx2
import yaml
from langchain_anthropic import ChatAnthropic
from langchain_anthropic.chat_models import AnthropicConnectionError, AnthropicTimeoutError
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.exceptions import ModelConnectionError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from agents.ports import Intent
from orchestrator.config import Settings

__all__ = [
    "AnthropicChatModel",
    "ModelRegistry",
    "OpenAIChatModel",
    "ModelSpec",
    "Provider",
    "RoutingPolicy",
    "RoutingPolicyError",
    "RoutingRule",
    "RuleCondition",
    "StreamTruncatedError",
    "TierSpec",
    "build_chat_model",
    "configured_provider",
]

log = logging.getLogger(__name__)

Provider = Literal["openai", "anthropic"]

# OpenAI-compatible servers such as vLLM accept any key, but the openai SDK refuses to start without one.
_PLACEHOLDER_OPENAI_KEY = "EMPTY"
_CREDENTIAL_SETTINGS: dict[Provider, str] = {
    "openai": "OPENAI_API_KEY (or OPENAI_BASE_URL)",
    "anthropic": "ANTHROPIC_API_KEY",
}


class RoutingPolicyError(ValueError):
    """An unreadable or invalid routing policy; the message names the file and the field."""


# --------------------------------------------------------------------------------------------
# What to build
# --------------------------------------------------------------------------------------------


class ModelSpec(BaseModel):
    """One concrete chat model: provider, model name and generation settings.

    Attributes:
        provider: `openai` (also any OpenAI-compatible server by base URL) or `anthropic`.
        model: The provider's model name.
        temperature: Sampling temperature; the provider default when None.
        max_tokens: Cap on the reply length; the provider default when None.
        max_retries: Retries the SDK makes on 429, 5xx and connection errors.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Provider
    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0)
    max_retries: int = Field(default=1, ge=0, le=5)


def configured_provider(settings: Settings) -> Provider | None:
    """The provider that has credentials: OpenAI (key or base URL) first, else Anthropic, else None."""
    if settings.openai_api_key or settings.openai_base_url:
        return "openai"
    if settings.anthropic_api_key:
        return "anthropic"
    return None


def _has_credentials(provider: Provider, settings: Settings) -> bool:
    if provider == "openai":
        return bool(settings.openai_api_key or settings.openai_base_url)
    return bool(settings.anthropic_api_key)


class StreamTruncatedError(ModelConnectionError):
    """A stream ended cleanly but without the provider's final event: the answer may be cut short."""


def _finished(chunk: ChatGenerationChunk, key: str) -> bool:
    return bool(chunk.message.response_metadata.get(key) or (chunk.generation_info or {}).get(key))


def _truncated(model: str, key: str) -> StreamTruncatedError:
    return StreamTruncatedError(f"{model}: the stream ended without a {key}; not returning a truncated answer")


def _connection_error(exc: httpx2.TransportError) -> AnthropicConnectionError | AnthropicTimeoutError:
    try:
        request = exc.request
    except RuntimeError:
        request = httpx2.Request("POST", "/v1/messages")
    if isinstance(exc, httpx2.TimeoutException):
        return AnthropicTimeoutError(request)
    return AnthropicConnectionError(message=f"stream interrupted: {exc}", request=request)


class OpenAIChatModel(ChatOpenAI):
    """`ChatOpenAI` that refuses a stream which ends without a `finish_reason`.

    The openai SDK ends a stream quietly when the body closes early without `[DONE]` (a proxy or
    a self-hosted server restarting), which would hand TTS half a sentence as if it were whole.
    """

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        finished = False
        for chunk in super()._stream(*args, **kwargs):
            finished = finished or _finished(chunk, "finish_reason")
            yield chunk
        if not finished and not self.use_responses_api:
            raise _truncated(self.model_name, "finish_reason")

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        finished = False
        async for chunk in super()._astream(*args, **kwargs):
            finished = finished or _finished(chunk, "finish_reason")
            yield chunk
        # The Responses API marks the end differently; its streams are left to the SDK.
        if not finished and not self.use_responses_api:
            raise _truncated(self.model_name, "finish_reason")


class AnthropicChatModel(ChatAnthropic):
    """`ChatAnthropic` that surfaces every broken stream as a `ModelConnectionError`.

    anthropic 1.17's stream iterator lets `httpx2` errors escape unwrapped (openai 3.x wraps them in
    `APIConnectionError`), so a dropped stream would bypass langchain's error classification and
    reach the graph as a raw `httpx2.RemoteProtocolError`, a type `agents/` cannot name. A body that
    ends cleanly before `message_delta` (no `stop_reason`) is refused as truncated.
    """

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        finished = False
        try:
            for chunk in super()._stream(messages, stop, run_manager, **kwargs):
                finished = finished or _finished(chunk, "stop_reason")
                yield chunk
        except httpx2.TransportError as exc:
            raise _connection_error(exc) from exc
        if not finished:
            raise _truncated(self.model, "stop_reason")

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        finished = False
        try:
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                finished = finished or _finished(chunk, "stop_reason")
                yield chunk
        except httpx2.TransportError as exc:
            raise _connection_error(exc) from exc
        if not finished:
            raise _truncated(self.model, "stop_reason")


def build_chat_model(spec: ModelSpec, settings: Settings) -> BaseChatModel:
    """Build the vendor chat model for `spec` from the settings' keys, base URLs and timeout.

    Args:
        spec: Which provider and model, and its generation settings.
        settings: Supplies the API key, base URL and `llm_timeout_s`.

    Returns:
        An `OpenAIChatModel` or `AnthropicChatModel` (`ChatOpenAI` / `ChatAnthropic` with stream guards),
        streaming token usage.
    """
    timeout = settings.llm_timeout_s
    if spec.provider == "openai":
        key = settings.openai_api_key or SecretStr(_PLACEHOLDER_OPENAI_KEY)
        return OpenAIChatModel(
            model=spec.model,
            api_key=key,
            base_url=settings.openai_base_url,
            timeout=timeout,
            max_retries=spec.max_retries,
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            # langchain-openai only asks for streamed usage by itself on api.openai.com; cost
            # accounting needs it from vLLM and other base URLs too.
            stream_usage=True,
            # The default allows 120 s of silence between chunks: far too long for a caller.
            stream_chunk_timeout=timeout,
        )
    anthropic_kwargs: dict[str, Any] = {}
    if spec.max_tokens is not None:
        # Left unset, langchain-anthropic picks the model profile's maximum.
        anthropic_kwargs["max_tokens"] = spec.max_tokens
    return AnthropicChatModel(
        model=spec.model,
        api_key=settings.anthropic_api_key or SecretStr(""),
        base_url=settings.anthropic_base_url,
        timeout=timeout,
        max_retries=spec.max_retries,
        temperature=spec.temperature,
        stream_usage=True,
        **anthropic_kwargs,
    )


# --------------------------------------------------------------------------------------------
# The routing policy
# --------------------------------------------------------------------------------------------


class TierSpec(BaseModel):
    """One model tier: a model per provider, an optional preferred provider and generation settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Provider | None = None
    models: dict[Provider, str] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0)
    max_retries: int = Field(default=1, ge=0, le=5)

    @model_validator(mode="after")
    def _preferred_provider_has_a_model(self) -> TierSpec:
        if self.provider is not None and self.provider not in self.models:
            raise ValueError(f"provider {self.provider!r} has no entry under models")
        return self


class RuleCondition(BaseModel):
    """When a rule applies; every condition given must hold, and an empty condition always holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    intents: tuple[Intent, ...] | None = None
    confidence_below: float | None = Field(default=None, ge=0.0, le=1.0)
    confidence_at_least: float | None = Field(default=None, ge=0.0, le=1.0)
    failures_at_least: int | None = Field(default=None, ge=0)

    def matches(self, intent: str, confidence: float, failures: int) -> bool:
        """Whether a turn with this intent, confidence and failure count meets every condition."""
        if self.intents is not None and intent not in self.intents:
            return False
        if self.confidence_below is not None and not confidence < self.confidence_below:
            return False
        if self.confidence_at_least is not None and not confidence >= self.confidence_at_least:
            return False
        return not (self.failures_at_least is not None and failures < self.failures_at_least)


class RoutingRule(BaseModel):
    """Send turns that meet `when` to `tier`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tier: str
    when: RuleCondition = Field(default_factory=RuleCondition)


class RoutingPolicy(BaseModel):
    """Which model tier serves which intent, confidence level and call state (see prompts/routing.yaml).

    Attributes:
        tiers: The model tiers by name.
        rules: Checked in order; the first match names the tier.
        default_tier: The tier when no rule matches.
        router_tier: The tier of the router's LLM fallback.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    tiers: dict[str, TierSpec] = Field(min_length=1)
    rules: tuple[RoutingRule, ...] = ()
    default_tier: str
    router_tier: str

    @model_validator(mode="after")
    def _tiers_exist(self) -> RoutingPolicy:
        known = sorted(self.tiers)
        for field_name in ("default_tier", "router_tier"):
            if getattr(self, field_name) not in self.tiers:
                raise ValueError(f"{field_name}: unknown tier {getattr(self, field_name)!r} (known: {known})")
        for index, rule in enumerate(self.rules):
            if rule.tier not in self.tiers:
                raise ValueError(f"rules.{index}.tier: unknown tier {rule.tier!r} (known: {known})")
        return self

    @classmethod
    def load(cls, path: Path | str) -> RoutingPolicy:
        """Read and validate a policy file.

        Args:
            path: The YAML file.

        Returns:
            The validated policy.

        Raises:
            RoutingPolicyError: The file is missing, is not YAML, or fails validation; the message
                names the file and each bad field (for example `tiers.small.models`).
        """
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RoutingPolicyError(f"{path}: cannot read routing policy: {exc}") from exc
        except yaml.YAMLError as exc:
            raise RoutingPolicyError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise RoutingPolicyError(f"{path}: a routing policy is a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                where = ".".join(str(part) for part in err["loc"]) or "(top level)"
                problems.append(f"{where}: {err['msg']}")
            raise RoutingPolicyError(f"{path}: invalid routing policy: " + "; ".join(problems)) from exc

    def tier_for(self, intent: str, confidence: float, *, failures: int = 0) -> str:
        """The tier for one turn: the first matching rule's, else `default_tier`.

        Args:
            intent: The router's intent label.
            confidence: The classifier's confidence in it, 0 to 1.
            failures: Failed turns so far in this call (tool errors, re-asks, supervisor overrides).

        Returns:
            A tier name from `tiers`.
        """
        for rule in self.rules:
            if rule.when.matches(intent, confidence, failures):
                return rule.tier
        return self.default_tier

    def spec_for(self, tier: str, settings: Settings) -> ModelSpec:
        """The concrete model of a tier under these settings' credentials.

        Args:
            tier: A tier name.
            settings: Decides which provider has credentials.

        Returns:
            The model spec; when the tier's preferred provider has no credentials, the configured
            provider's (logged as a warning naming the missing setting).

        Raises:
            RoutingPolicyError: No provider is configured, or the tier has no model for the one that is.
        """
        spec = self.tiers[tier]
        configured = configured_provider(settings)
        if configured is None:
            raise RoutingPolicyError("no LLM configured: set OPENAI_API_KEY, OPENAI_BASE_URL or ANTHROPIC_API_KEY")
        provider: Provider = configured
        if spec.provider is not None:
            if _has_credentials(spec.provider, settings):
                provider = spec.provider
            else:
                log.warning(
                    "routing tier %r asks for %s but %s is not set; using %s instead",
                    tier,
                    spec.provider,
                    _CREDENTIAL_SETTINGS[spec.provider],
                    configured,
                )
        if provider not in spec.models:
            raise RoutingPolicyError(
                f"{settings.routing_policy}: tiers.{tier}.models has no {provider!r} model, "
                f"and {provider} is the only provider configured"
            )
        return ModelSpec(
            provider=provider,
            model=spec.models[provider],
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            max_retries=spec.max_retries,
        )


# --------------------------------------------------------------------------------------------
# One chat model per tier, built on first use
# --------------------------------------------------------------------------------------------

ChatModelFactory = Callable[[ModelSpec, Settings], BaseChatModel]


class ModelRegistry:
    """Chat models by tier, resolved at start-up and built lazily, one per tier.

    Specs are resolved eagerly so a bad policy or missing credential fails when the worker starts,
    not on a caller's first turn; clients are built on first use so unused tiers cost nothing.
    """

    def __init__(
        self, policy: RoutingPolicy, settings: Settings, *, factory: ChatModelFactory = build_chat_model
    ) -> None:
        """Resolve every tier's model spec.

        Args:
            policy: The routing policy.
            settings: Credentials, base URLs and timeout.
            factory: Builds a chat model from a spec (tests pass a scripted one).
        """
        self.policy = policy
        self.specs: dict[str, ModelSpec] = {tier: policy.spec_for(tier, settings) for tier in policy.tiers}
        self._settings = settings
        self._factory = factory
        self._models: dict[str, BaseChatModel] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, factory: ChatModelFactory = build_chat_model) -> ModelRegistry | None:
        """The registry for these settings, or None when no LLM is configured (deterministic flows only).

        Raises:
            RoutingPolicyError: The policy file at `settings.routing_policy` is invalid.
        """
        if configured_provider(settings) is None:
            return None
        return cls(RoutingPolicy.load(settings.routing_policy), settings, factory=factory)

    def tier_model(self, tier: str) -> BaseChatModel:
        """The chat model of a tier, built on first use."""
        model = self._models.get(tier)
        if model is None:
            model = self._models[tier] = self._factory(self.specs[tier], self._settings)
        return model

    def model_for(self, intent: str, confidence: float, failures: int = 0) -> BaseChatModel:
        """The chat model for one turn, by the policy's rules."""
        return self.tier_model(self.policy.tier_for(intent, confidence, failures=failures))

    def router_model(self) -> BaseChatModel:
        """The chat model of the router's LLM fallback."""
        return self.tier_model(self.policy.router_tier)
