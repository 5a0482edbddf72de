"""`switchboard users`: console users (supervisors, admins) and admin API tokens, in the store."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from orchestrator.config import SettingsError, load_settings

users_app = typer.Typer(help="Console users: supervisors and admins (passwords are stored as scrypt hashes).")
T = TypeVar("T")


def _with_users(action: Callable[[Any], Awaitable[T]]) -> T:
    async def run() -> T:
        from orchestrator.console.auth import UserStore
        from orchestrator.console.models import create_console_schema
        from orchestrator.domain import open_engine

        settings = load_settings()  # an invalid setting: one line and exit 2, at the CLI's boundary
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = open_engine(settings.sqlalchemy_url)
        try:
            await create_console_schema(engine)
            return await action(UserStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


@users_app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="Login name: letters, digits, '.', '-' or '_'.")],
    role: Annotated[str, typer.Option(help="supervisor or admin.")] = "supervisor",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin (scripts) instead of a prompt.")
    ] = False,
) -> None:
    """Create a user, or set a new password and role for an existing one.

    An existing user's open sessions end; a disabled user is enabled again.
    """
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        _with_users(lambda users: users.add(username, password, role))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{username} ({role}) saved")


@users_app.command("list")
def list_users() -> None:
    """Every user, their role, and whether they are disabled."""
    for username, role, disabled in _with_users(lambda users: users.list()):
        typer.echo(f"{username}\t{role}" + ("\tdisabled" if disabled else ""))


@users_app.command("remove")
def remove(username: str) -> None:
    """Delete a user and their API tokens; their open console sessions end at once."""
    if not _with_users(lambda users: users.remove(username)):
        typer.echo(f"error: no user {username!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{username} removed")


@users_app.command("disable")
def disable(username: str) -> None:
    """Lock a user out but keep them: login refused, open sessions ended, API tokens deleted.

    `users add NAME` with a new password enables them again.
    """
    if not _with_users(lambda users: users.disable(username)):
        typer.echo(f"error: no user {username!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{username} disabled")


@users_app.command("token")
def token(username: str) -> None:
    """Create a bearer API token for an admin (printed once; send it as `Authorization: Bearer ...`)."""
    try:
        value = _with_users(lambda users: users.create_token(username))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(value)


@users_app.command("unlock")
def unlock(
    username: Annotated[str, typer.Argument(help="The user locked out after too many failed logins.")],
    address: Annotated[
        str | None, typer.Option(help="Also lift the lockout of this client address (as the API logs it).")
    ] = None,
    prefix: Annotated[str, typer.Option(help="The API's queue prefix (its `serve --prefix`).")] = "sb",
) -> None:
    """Lift a login lockout now instead of when it runs out (audited); it lives in the API's Redis."""

    async def run() -> list[str]:
        from orchestrator.console.auth import LoginThrottle
        from orchestrator.console.models import create_console_schema
        from orchestrator.console.service import AuditLog
        from orchestrator.domain import open_engine
        from orchestrator.redis_client import open_redis
        from orchestrator.worker.main import resolve_redis_url

        settings = load_settings()
        client = open_redis(resolve_redis_url(settings))
        engine = open_engine(settings.sqlalchemy_url)
        try:
            await create_console_schema(engine)
            throttle, audit = LoginThrottle(client, prefix=prefix), AuditLog(engine)
            lifted = []
            targets = [("user", username)] + ([("address", address)] if address else [])
            for kind, value in targets:
                was = await (throttle.unlock_user(value) if kind == "user" else throttle.unlock_address(value))
                what = f"{kind} {value}"
                await audit.record("cli", "unlock", detail=what + ("" if was else " (was not locked out)"))
                lifted.append(f"{what}: " + ("unlocked" if was else "was not locked out"))
            return lifted
        finally:
            await client.aclose()
            await engine.dispose()

    from orchestrator.worker.main import RedisNotConfigured

    try:
        lines = asyncio.run(run())
    except (SettingsError, RedisNotConfigured) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in lines:
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add the `users` command group to the `switchboard` app."""
    app.add_typer(users_app, name="users")
