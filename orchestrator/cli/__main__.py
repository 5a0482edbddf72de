"""`python -m orchestrator.cli` runs the `switchboard` command."""

from orchestrator.cli.main import main

main()
