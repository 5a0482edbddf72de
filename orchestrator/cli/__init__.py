"""The `switchboard` command line: one module per group of commands, one error boundary for all."""

from orchestrator.cli.main import app, main

__all__ = ["app", "main"]
