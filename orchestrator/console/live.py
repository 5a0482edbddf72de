"""The live feed under its old name, while the console's and the worker's last importers move to orchestrator.live."""

from orchestrator.live import KEEP_ENDED_S, MAX_LINES, STALE_S, Line, LiveCall, LiveFeed, live_flags, sentiment

__all__ = ["KEEP_ENDED_S", "MAX_LINES", "STALE_S", "Line", "LiveCall", "LiveFeed", "live_flags", "sentiment"]
