"""The `switchboard` command line: one module per group of commands, one error boundary for all.

Commands import their subsystem inside the command's function, so `switchboard --help` loads none of them.
"""

from orchestrator.cli.main import app, main

__all__ = ["app", "main"]
