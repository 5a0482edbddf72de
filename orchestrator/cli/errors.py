"""How every `switchboard` command quiets library logs and answers a failure: one clear line and an exit code.

Exit codes: 2 for bad input (arguments, files, settings), 1 for a failure to do the work (a server that
cannot be reached, an error of ours), 130 for Ctrl-C. ``SWITCHBOARD_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer._click import exceptions as usage  # typer 0.29 ships click inside itself; these are its errors

err = Console(stderr=True)

# Libraries whose INFO and WARNING lines are noise on a terminal; their errors still show.
# livekit logs every slow VAD frame on a busy 2-core box; our own warnings (fallbacks) stay visible.
NOISY_LOGGERS = (
    "livekit",
    "livekit.agents",
    "livekit.plugins.silero",
    "httpx",
    "httpx2",
    "asyncio",
    "opentelemetry",
    "faster_whisper",
)


class BadInput(Exception):
    """Input a command cannot use: the message says what and where; the command exits 2."""


def quiet_logs() -> None:
    """Warnings and errors only, on stderr, with library chatter turned down (every command calls this)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.ERROR)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line on stderr and exit with `code` (2: bad input)."""
    err.print(f"[red]{escape(message)}[/red]", soft_wrap=True)
    raise typer.Exit(code)


def describe(exc: BaseException) -> tuple[str, int]:
    """One line for an exception that reached the top of a command, and the exit code it deserves."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from orchestrator.config import SettingsError

    if isinstance(exc, BadInput | SettingsError):
        return str(exc), 2
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"cannot reach Redis: {_first_line(exc)} (is it running? REDIS_URL names it)", 1
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or exc}: no such file", 2
    if isinstance(exc, IsADirectoryError | NotADirectoryError | PermissionError):
        return f"{exc.filename or exc}: {exc.strerror or exc}", 2
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", 2
    if isinstance(exc, ConnectionRefusedError | ConnectionError | TimeoutError | OSError):
        return f"{type(exc).__name__}: {_first_line(exc)}", 1
    return f"error: {type(exc).__name__}: {_first_line(exc)} (SWITCHBOARD_DEBUG=1 shows the traceback)", 1


def run_cli(app: Callable[..., object]) -> None:
    """Run a typer app so that nothing but a line (and its exit code) reaches the terminal on failure."""
    try:
        # Not standalone: click hands usage errors (a bad option value, a missing argument) to us instead of
        # drawing its multi-line box, and returns an exit code instead of exiting.
        code = app(standalone_mode=False)
    except usage.NoArgsIsHelpError:
        sys.exit(0)  # the group has printed its help
    except usage.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "switchboard"
        err.print(f"[red]{escape(command)}: {escape(exc.format_message())}[/red]", soft_wrap=True)
        sys.exit(2)
    except usage.ClickException as exc:
        err.print(f"[red]{escape(exc.format_message())}[/red]", soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("interrupted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # the boundary of the program: every failure becomes one line
        if os.environ.get("SWITCHBOARD_DEBUG"):
            raise
        message, code = describe(exc)
        err.print(f"[red]{escape(message)}[/red]", soft_wrap=True)
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else 0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
