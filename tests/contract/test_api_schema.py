"""Schemathesis against the served OpenAPI document: no generated request may cause a 5xx or break the schema."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python.asgi import shutdown_lifespans

from orchestrator.api import create_app
from orchestrator.config import Settings, load_settings
from orchestrator.console.auth import UserStore
from orchestrator.console.models import create_console_schema
from orchestrator.domain import open_engine
from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.contract

PREFIX = f"schema-{uuid.uuid4().hex[:10]}"
SETTINGS = load_settings(redis_url=REDIS_TEST_URL, data_dir=tempfile.mkdtemp(prefix="sb-schema-"))
# The lifespan opens the queue on real Redis, in the event loop schemathesis runs the app in.
APP = create_app(SETTINGS, queue_prefix=PREFIX)
# The live transcript is an endless event stream by design (a supervisor keeps it open): a generated request
# that reaches a live call would never end, so it is left to the console's own tests.
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path="/v1/console/calls/{call_id}/stream")
# Routes that check their own signature: the generated Authorization header stays theirs.
SIGNED = {"/webhooks/livekit", "/v1/calls"}


async def _admin_token(settings: Settings) -> str:
    """An admin's API token in the app's store, so generated requests reach the handlers behind the login."""
    engine = open_engine(settings.sqlalchemy_url)
    try:
        await create_console_schema(engine)
        users = UserStore(engine)
        await users.add("schema-admin", "schema-password", "admin")
        return await users.create_token("schema-admin")
    finally:
        await engine.dispose()


TOKEN = asyncio.run(_admin_token(SETTINGS))


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    # An outcome with a huge entry id: reads after any smaller cursor return at once instead of
    # blocking for the generated wait_ms, which keeps this module fast.
    client.xadd(f"{PREFIX}:outcomes", {"o": '{"call_id": "seed"}'}, id=f"{2**63}-0")
    yield
    shutdown_lifespans()
    try:
        keys = list(client.scan_iter(f"{PREFIX}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=None if case.path in SIGNED else {"Authorization": f"Bearer {TOKEN}"})
