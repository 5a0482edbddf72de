"""The softphone in headless Chromium with the microphone denied: a clear message, and the call stays with the AI."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from playwright.async_api import Browser, Page, async_playwright

from orchestrator.api import create_app
from orchestrator.config import load_settings
from orchestrator.contracts import CallJob
from tests.conftest import REDIS_TEST_URL
from tests.console_app import ServedApp, served

pytestmark = pytest.mark.flow

CHROMIUM = os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium")
# A fake device exists (so the refusal is the permission's, not a missing microphone); no prompt is ever answered.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--use-fake-device-for-media-stream"]
PASSWORD = "correct horse battery"

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)


@pytest.fixture(scope="module")
def server() -> Iterator[ServedApp]:
    prefix = f"softphone-denied-{uuid.uuid4().hex[:10]}"
    settings = load_settings(
        redis_url=REDIS_TEST_URL,
        data_dir=tempfile.mkdtemp(prefix="sb-softphone-denied-"),
        livekit_url="ws://127.0.0.1:7880",  # never reached: the browser stops at the microphone
    )
    with served(create_app(settings, queue_prefix=prefix)) as srv:
        srv.add_user("sam", PASSWORD, "supervisor")
        yield srv
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def page(server: ServedApp) -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser: Browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            # No permissions granted: the page's microphone request is refused.
            context = await browser.new_context(base_url=server.url, permissions=[])
            page = await context.new_page()
            await page.goto("/console/login")
            await page.fill("#username", "sam")
            await page.fill("#password", PASSWORD)
            await page.click("#login-btn")
            await page.wait_for_url("**/console/calls")
            yield page
        finally:
            await browser.close()


def room_call(server: ServedApp) -> str:
    call_id = f"lk-RM_{uuid.uuid4().hex[:12]}"
    job = CallJob(call_id=call_id, source="livekit", room=f"call-{uuid.uuid4().hex[:8]}", caller_id="+15550100001")
    server.call(server.app.state.console.feed.call_started(job, worker="w1", resumed_at=0))
    return call_id


async def test_barging_in_with_the_microphone_denied_says_so_and_leaves_the_call_with_the_ai(
    server: ServedApp, page: Page
) -> None:
    call_id = room_call(server)
    await page.goto(f"/console/calls/{call_id}")
    assert await page.inner_text("#sp-state") == "Not connected to the call's audio."
    await page.click("#sp-barge")
    error = page.locator("#sp-error")
    await error.wait_for(state="visible")
    assert (await error.inner_text()).startswith("The browser denied the microphone.")
    assert "You can still listen in." in await error.inner_text()
    assert await page.get_attribute("#softphone", "data-state") == "idle"
    # The microphone is asked for before the call is taken: the AI still has it, and nothing was signed.
    feed = server.app.state.console.feed
    assert server.call(feed.get(call_id)).controller == ""
    assert server.call(feed.pending_commands(call_id)) == []
    entries, _total = server.call(server.app.state.console.audit.entries(call_id=call_id))
    assert [e.action for e in entries] == []


async def test_calling_the_agent_with_the_microphone_denied_places_no_call(server: ServedApp, page: Page) -> None:
    await page.goto("/console/talk")
    assert await page.inner_text("#talk-state") == "Not on a call."
    await page.click("#talk-call")
    error = page.locator("#talk-error")
    await error.wait_for(state="visible")
    assert (await error.inner_text()).startswith("The browser denied the microphone.")
    assert await page.get_attribute("#talk", "data-state") == "idle"
    assert not await page.is_disabled("#talk-call")
    entries, _total = server.call(server.app.state.console.audit.entries(username="sam"))
    assert "talk" not in [e.action for e in entries]


async def test_softphone_pages_may_connect_to_the_livekit_server_and_nowhere_else(
    server: ServedApp, page: Page
) -> None:
    response = await page.goto("/console/talk")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert csp.endswith("; connect-src 'self' ws://127.0.0.1:7880 http://127.0.0.1:7880")
    calls = await page.goto("/console/calls")
    assert calls is not None
    assert "connect-src" not in calls.headers["content-security-policy"]
