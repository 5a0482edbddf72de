"""Flow fixtures: a real store (SQLite in a temp folder), the shipped classifier and a pinned clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import load_settings
from orchestrator.runtime import Services

# A Tuesday afternoon in New York; the demo tenant's slots and invoices are seeded relative to it.
NOW = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)


def fixed_clock() -> datetime:
    return NOW


@pytest.fixture
def open_services(tmp_path: Path) -> Callable[..., Any]:
    async def opener(**kwargs: Any) -> Services:
        settings = load_settings(data_dir=tmp_path / "data")
        return await Services.open(settings, clock=fixed_clock, **kwargs)

    return opener


@pytest.fixture
async def services(open_services: Callable[..., Any]) -> AsyncIterator[Services]:
    svc = await open_services()
    try:
        yield svc
    finally:
        await svc.aclose()
