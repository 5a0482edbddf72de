"""The secrets the API is served with: their public development defaults are tolerated on loopback only.

`switchboard serve` applies `check_served_secrets` before it binds; the app logs `secret_problems` as
warnings however it is started. A weak secret is the built-in default (published in this repository) or
one shorter than `MIN_SECRET_CHARS`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pydantic import SecretStr

from orchestrator.config import Settings

__all__ = [
    "MIN_SECRET_CHARS",
    "SERVED_SECRETS",
    "InsecureSecrets",
    "check_served_secrets",
    "is_loopback",
    "secret_problems",
]

# 32 characters of a random token are ~190 bits: far beyond guessing an HMAC key from signed messages.
MIN_SECRET_CHARS = 32


@dataclass(frozen=True)
class ServedSecret:
    field: str
    env: str
    guards: str


SERVED_SECRETS = (
    ServedSecret("console_secret", "SWITCHBOARD_CONSOLE_SECRET", "the console's session cookie signatures"),
    ServedSecret("intake_secret", "SWITCHBOARD_INTAKE_SECRET", "the signatures on POST /v1/calls"),
    ServedSecret("livekit_api_secret", "LIVEKIT_API_SECRET", "LiveKit's webhook signatures and room tokens"),
)


class InsecureSecrets(RuntimeError):
    """The API would be reachable from other machines with a guessable secret."""


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it is treated as reachable


def secret_problems(settings: Settings) -> list[str]:
    """One message per weak secret (the development default, or too short), naming its setting."""
    problems = []
    for secret in SERVED_SECRETS:
        value: SecretStr = getattr(settings, secret.field)
        default = Settings.model_fields[secret.field].default
        if isinstance(default, SecretStr) and value.get_secret_value() == default.get_secret_value():
            problem = "is the development default, which is public"
        elif len(value.get_secret_value()) < MIN_SECRET_CHARS:
            problem = f"is shorter than {MIN_SECRET_CHARS} characters"
        else:
            continue
        problems.append(
            f"{secret.env} {problem}, so {secret.guards} prove nothing. Set it to a random value of "
            f"{MIN_SECRET_CHARS}+ characters, the same in every process "
            "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')."
        )
    return problems


def check_served_secrets(settings: Settings, *, host: str) -> list[str]:
    """The rule `switchboard serve` applies before it binds ``host``.

    Weak secrets are tolerated only on a loopback address, where nobody else can reach the API; there
    they are returned, for warnings. On any other address (``0.0.0.0``, a LAN or public IP, a host name)
    they are refused.

    Raises:
        InsecureSecrets: a weak secret on an address other machines can reach.
    """
    problems = secret_problems(settings)
    if problems and not is_loopback(host):
        raise InsecureSecrets(
            f"refusing to serve on {host}: " + " ".join(problems) + " Weak secrets are allowed only on a loopback "
            "address (--host 127.0.0.1)."
        )
    return problems
