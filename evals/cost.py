"""Cost per call from LLM token usage and the price table in evals/costs.yaml."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

COSTS_FILE = Path(__file__).resolve().parent / "costs.yaml"


@lru_cache(maxsize=4)
def _prices(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {"models": dict(data.get("models") or {}), "default": dict(data.get("default") or {})}


def cost_usd(usage_by_model: dict[str, Any], path: Path = COSTS_FILE) -> float:
    """USD spent on the given usage (langchain `UsageMetadata` per model name).

    Args:
        usage_by_model: model name -> {"input_tokens", "output_tokens", …}.
        path: the price table.
    """
    prices = _prices(path)
    total = 0.0
    for model, usage in usage_by_model.items():
        # Longest prefix first, so "gpt-4o-mini" is not priced as "gpt-4o".
        match = next(
            (prices["models"][p] for p in sorted(prices["models"], key=len, reverse=True) if model.startswith(p)),
            prices["default"],
        )
        total += usage.get("input_tokens", 0) * float(match.get("input", 0)) / 1e6
        total += usage.get("output_tokens", 0) * float(match.get("output", 0)) / 1e6
    return total
