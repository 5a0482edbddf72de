"""The supervisor console in real headless Chromium: login, live calls, escalations, whisper, take-over, refusals."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.async_api import Browser, Page, async_playwright

from orchestrator.api import create_app
from orchestrator.config import REPO_ROOT, Settings, load_settings
from orchestrator.contracts import CallJob
from orchestrator.queue import open_queue
from orchestrator.results import CallResult, TurnRecord
from orchestrator.runtime import Services
from tests.conftest import REDIS_TEST_URL
from tests.console_app import ServedApp, app_routes, live_worker, served

pytestmark = pytest.mark.flow

CHROMIUM = os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]
SHOTS = REPO_ROOT / "artifacts" / "screenshots"
PASSWORD = "correct horse battery"
MARIA = "+15550100001"
WHISPER = "We can also waive the visit fee today."
SPECIALISTS = {"billing", "scheduling", "support"}
# Callers pause between turns so that a supervisor has time to act, as on a real call.
TURN_GAP_MS = "2500"

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(
        redis_url=REDIS_TEST_URL,
        data_dir=tempfile.mkdtemp(prefix="sb-console-browser-"),
        # No test here is about a lease running out: a page starved on a loaded machine renews late, and a
        # 5 s lease then sent the call back to the AI mid-test (its hold line in the transcript).
        console_lease_s=120.0,
        console_disconnect_grace_s=30.0,
    )


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    name = f"console-ui-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        keys = list(client.scan_iter(f"{name}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def server(settings: Settings, prefix: str) -> Iterator[ServedApp]:
    with served(create_app(settings, queue_prefix=prefix)) as srv:
        srv.add_user("sam", PASSWORD, "supervisor")
        srv.add_user("kim", PASSWORD, "supervisor")
        srv.add_user("ada", PASSWORD, "admin")
        yield srv


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def logged_in(browser: Browser, server: ServedApp, username: str) -> Page:
    context = await browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto("/console/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-btn")
    await page.wait_for_url("**/console/calls")
    return page


async def lines(page: Page) -> list[dict[str, str]]:
    result: list[dict[str, str]] = await page.eval_on_selector_all(
        "#transcript .line",
        "els => els.map(e => ({role: e.dataset.role, agent: e.dataset.agent, text: e.textContent.trim()}))",
    )
    return result


async def until(
    check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 60.0, page: Page | None = None
) -> Any:
    # timeout_s caps a hung page; it is no speed claim (a busy machine runs Chromium and a worker slowly).
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            if page is not None:
                await page.screenshot(path=str(SHOTS / "failure.png"))
                raise AssertionError(f"timed out waiting for {what}; lines: {await lines(page)}")
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def agent_lines_after(all_lines: list[dict[str, str]], marker: str) -> list[dict[str, str]]:
    """Agent lines after the event line containing ``marker``."""
    at = next(i for i, ln in enumerate(all_lines) if ln["role"] == "event" and marker in ln["text"])
    return [ln for ln in all_lines[at + 1 :] if ln["role"] == "agent"]


async def test_login_refuses_wrong_credentials_then_lets_a_supervisor_in(browser: Browser, server: ServedApp) -> None:
    page = await (await browser.new_context(base_url=server.url)).new_page()
    await page.goto("/console/calls")
    assert "/console/login" in page.url
    assert "Please log in" in await page.inner_text("#login-message")
    await page.fill("#username", "sam")
    await page.fill("#password", "not the password")
    await page.click("#login-btn")
    assert "Wrong username or password." in await page.inner_text("#login-message")
    await page.screenshot(path=str(SHOTS / "login-refused.png"))
    await page.fill("#password", PASSWORD)
    await page.click("#login-btn")
    await page.wait_for_url("**/console/calls")
    assert "sam" in await page.inner_text("form.who")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "sb_console")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    # An expired session sends the supervisor back to the login page with a clear message.
    console = server.app.state.console
    server.call(console.sessions.end(console.signer.unsign(cookie["value"])))
    await page.goto("/console/escalations")
    assert "/console/login" in page.url
    assert "Your session has expired" in await page.inner_text("#login-message")


async def test_unauthenticated_access_is_refused_on_every_page_and_api_path(
    browser: Browser, server: ServedApp
) -> None:
    context = await browser.new_context(base_url=server.url)
    page = await context.new_page()
    pages = apis = 0
    for route in app_routes(server.app.routes):
        path: str = getattr(route, "path", "")
        methods = sorted(set(getattr(route, "methods", None) or ()) - {"HEAD", "OPTIONS"})
        url = path.replace("{call_id}", "call-1").replace("{ticket_id}", "TK-1").replace("{name}", "x")
        if path.startswith("/console") and path not in {"/console/login", "/console/static/{name}"}:
            for method in methods:
                if method == "GET":
                    await page.goto(url)
                    assert page.url.startswith(f"{server.url}/console/login"), (path, page.url)
                    assert await page.is_visible("#login-btn")
                else:
                    r = await context.request.fetch(url, method=method, max_redirects=0)
                    assert r.status == 303, (method, path, r.status)
                    assert "/console/login" in r.headers["location"]
                pages += 1
        elif path.startswith("/v1/console"):
            for method in methods:
                if (method, path) == ("POST", "/v1/console/login"):
                    continue  # logging in is the one thing anyone may try
                r = await context.request.fetch(url, method=method, data="{}", max_redirects=0)
                assert r.status == 401, (method, path, r.status)
                assert (await r.json())["error"]["code"] == "unauthenticated"
                apis += 1
    assert pages >= 8
    assert apis >= 15


async def test_supervisors_watch_whisper_take_over_and_answer_escalations(
    browser: Browser, server: ServedApp, settings: Settings, prefix: str
) -> None:
    queue = open_queue(settings, REDIS_TEST_URL, prefix=prefix)
    await queue.setup()
    billing_call, escalated_call = f"call-a-{uuid.uuid4().hex[:8]}", f"call-b-{uuid.uuid4().hex[:8]}"
    billing_script = ["What's my balance?", "10027", "when is my next bill due", "hmm okay", "and what plan am I on"]
    billing_script += ["hmm okay", "and what plan am I on", "hmm okay", "and what plan am I on", "hmm okay"] * 2
    escalated_script = ["I want to talk to a real person", "hello?", "is anyone there?", "hello?", "still waiting"]
    escalated_script += ["hello?", "okay", "hello?", "okay", "hello?", "okay", "hello?"]
    try:
        async with live_worker(settings, queue) as worker:
            sam = await logged_in(browser, server, "sam")
            kim = await logged_in(browser, server, "kim")
            for call_id, script in ((billing_call, billing_script), (escalated_call, escalated_script)):
                await queue.admit(
                    CallJob(
                        call_id=call_id,
                        source="simulate",
                        room=call_id,
                        caller_id=MARIA if call_id == billing_call else "+15550109999",
                        script=script,
                        metadata={"turn_gap_ms": TURN_GAP_MS},
                    )
                )
            await asyncio.gather(
                _watch_whisper_take_over(sam, billing_call, worker), _accept_and_reply(kim, escalated_call, worker)
            )
            # Every action is in the audit log, which only admins can read.
            await sam.goto("/console/audit")
            assert "admins only" in await sam.inner_text("main")
            ada = await logged_in(browser, server, "ada")
            await ada.goto(f"/console/audit?call_id={billing_call}")
            audited = await ada.inner_text("#audit")
            for action in ("whisper", "take_over", "human_reply", "release"):
                assert action in audited
            # Each entry says who did what, in words.
            assert f"sam (supervisor) took over call {billing_call}" in audited
            assert f"sam (supervisor) whispered to the AI on call {billing_call}" in audited
            await ada.screenshot(path=str(SHOTS / "audit.png"))
    finally:
        await queue.aclose()


async def test_the_queue_offers_live_callers_first_and_callers_who_hung_up_as_callbacks(
    browser: Browser, server: ServedApp
) -> None:
    console = server.app.state.console
    on_line, hung_up = f"call-live-{uuid.uuid4().hex[:8]}", f"call-gone-{uuid.uuid4().hex[:8]}"
    for call_id, caller in ((on_line, "+15550100021"), (hung_up, "+15550100022")):
        job = CallJob(call_id=call_id, source="simulate", room=call_id, caller_id=caller)
        server.call(console.feed.call_started(job, worker="w1", resumed_at=0))
    server.call(console.feed.call_ended(hung_up, "escalated"))
    tickets = {}
    for call_id, priority in ((hung_up, 0), (on_line, 2)):
        opened = server.call(
            console.desk.open_ticket(
                call_id=call_id,
                account_id=None,
                reason="frustration",
                summary=f"Billing dispute ({call_id}).",
                priority=priority,
            )
        )
        tickets[call_id] = opened.ticket_id
    page = await logged_in(browser, server, "sam")
    await page.goto("/console/escalations")
    waiting = page.locator(f'#escalations tr[data-ticket-id="{tickets[on_line]}"]')
    await waiting.wait_for()
    assert "+15550100021" in await waiting.inner_text()
    assert await page.locator(f'#escalations tr[data-ticket-id="{tickets[hung_up]}"]').count() == 0
    owed = page.locator(f'#callbacks tr[data-ticket-id="{tickets[hung_up]}"]')
    await owed.wait_for()
    assert "+15550100022" in await owed.inner_text()
    assert await owed.locator("a.transcript-link").get_attribute("href") == f"/console/calls/{hung_up}"
    await page.screenshot(path=str(SHOTS / "escalation-queue-callbacks.png"), full_page=True)
    # The supervisor opens the callback, rings the number shown, and closes the ticket.
    await owed.locator("a.button").click()
    await page.wait_for_url(f"**/console/escalations/{tickets[hung_up]}")
    assert "+15550100022" in await page.inner_text("#callback-note")
    await page.screenshot(path=str(SHOTS / "callback.png"))
    await page.select_option("#disposition", "callback_done")
    await page.click("#close-ticket")
    await page.wait_for_url("**/console/escalations")
    await until(
        lambda: _count_is(page, f'#callbacks tr[data-ticket-id="{tickets[hung_up]}"]', 0), "the callback closed"
    )


def _record(call_id: str, caller: str, account: str | None, outcome: str) -> CallResult:
    result = CallResult(
        call_id=call_id,
        turns=[
            TurnRecord(
                "What's my balance?", "What's the ZIP code on your account?", "billing", "billing", 0.99, 20.0, 15.0
            ),
            TurnRecord("10027", "You're verified. Your balance is $79.99.", "billing", "billing", 0.99, 30.0, 25.0),
        ],
        handoffs=[{"turn": 1, "from_agent": "router", "to_agent": "billing", "reason": "intent", "context": ""}],
        outcome=outcome,
        tool_events=[
            {"turn": 2, "agent": "billing", "name": "get_balance", "args": {}, "ok": True, "result": "$79.99"}
        ],
        interventions=[{"turn": 2, "kind": "take_over", "reason": "supervisor", "detail": "sam"}],
        human_lines=[{"turn": 2, "agent": "sam", "text": "Sam here, I'll take it from here."}],
        caller_id=caller,
        account_id=account,
    )
    return result


async def test_history_pages_shows_the_caller_and_finds_calls_by_number_customer_outcome_and_date(
    browser: Browser, server: ServedApp, settings: Settings
) -> None:
    # The tenant's customers, as a worker on the same store seeds them.
    await (await Services.open(settings)).aclose()
    console = server.app.state.console
    tag = uuid.uuid4().hex[:6]
    day = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    # 60 calls from Jane Doe's line and one from Maria Gonzalez's (NW-1001), a day later.
    for i in range(60):
        server.call(
            console.records.record_call(
                _record(f"hist-{tag}-{i:02d}", "+15550109876", None, "resolved"),
                started_at=day + timedelta(minutes=i),
                duration_s=30,
            )
        )
    maria = f"hist-{tag}-maria"
    server.call(
        console.records.record_call(
            _record(maria, "+15550100001", "NW-1001", "handled_by_human"),
            started_at=day + timedelta(days=1),
            duration_s=45,
        )
    )
    page = await logged_in(browser, server, "sam")
    await page.goto("/console/history?number=%2B1+555-010-9876")
    assert await page.locator("#history tbody tr").count() == 25
    assert "Page 1 of 3 · 60 calls" in await page.inner_text("#page-of")
    await page.screenshot(path=str(SHOTS / "history.png"), full_page=True)
    await page.click("#next-page")
    await page.wait_for_url("**page=2*")
    assert "Page 2 of 3" in await page.inner_text("#page-of")
    assert "***9876" in await page.inner_text("#history tbody tr >> nth=0")

    # The caller's number in another format, the customer's name, the outcome and the day all find Maria's call.
    for query in (
        "number=(555)+010-0001",
        "customer=maria+gonz",
        "customer=nw-1001",
        "outcome=handled_by_human&since=2026-03-03&until=2026-03-03",
    ):
        await page.goto(f"/console/history?{query}")
        rows = page.locator("#history tbody tr")
        assert [await r.get_attribute("data-call-id") for r in await rows.all()] == [maria], query
    row_text = await page.inner_text(f'#history tr[data-call-id="{maria}"]')
    assert "Maria Gonzalez" in row_text
    assert "NW-1001" in row_text
    assert "handled by human" in row_text
    await page.goto("/console/history?since=2026-02-30")
    assert "From: a date like" in await page.inner_text("#history-error")

    # The record: who called, every line with its speaker (the person's by username), events as a timeline.
    await page.goto(f"/console/history/{maria}")
    assert "Maria Gonzalez" in await page.inner_text("#record-caller")
    said = await page.eval_on_selector_all(
        "#record-transcript .line", "els => els.map(e => [e.dataset.role, e.querySelector('b').textContent])"
    )
    assert said == [
        ["caller", "caller"],
        ["agent", "AI · billing"],
        ["caller", "caller"],
        ["agent", "AI · billing"],
        ["human", "sam (human)"],
    ]
    timeline = await page.inner_text("#timeline")
    assert "Handed from router to billing (intent)." in timeline
    assert "billing used get balance: done" in timeline
    assert "A person took the call: supervisor (sam)." in timeline
    assert "{" not in timeline
    await page.screenshot(path=str(SHOTS / "history-record.png"), full_page=True)


async def test_a_supervisor_takes_an_escalation_with_the_customers_context_and_closes_it_with_a_wrap_up_code(
    browser: Browser, server: ServedApp, settings: Settings
) -> None:
    await (await Services.open(settings)).aclose()  # the tenant's customers, as a worker seeds them
    console = server.app.state.console
    call_id = f"call-ctx-{uuid.uuid4().hex[:8]}"
    server.call(
        console.records.record_call(
            _record(f"{call_id}-before", "+15550100001", "NW-1001", "resolved"),
            started_at=datetime.now(UTC) - timedelta(days=2),
            duration_s=40,
        )
    )
    job = CallJob(call_id=call_id, source="simulate", room=call_id, caller_id="+15550100001")
    server.call(console.feed.call_started(job, worker="w1", resumed_at=0))
    # Verified on her account, as the worker's live feed publishes it after the ZIP check.
    server.call(console.feed.redis.hset(f"{console.feed.prefix}:console:call:{call_id}", "account_id", "NW-1001"))
    ticket = server.call(
        console.desk.open_ticket(
            call_id=call_id,
            account_id="NW-1001",
            reason="refund_over_policy",
            summary="Reason: a refund beyond what the assistant may approve. Verified: Maria Gonzalez.",
            priority=2,
        )
    )
    page = await logged_in(browser, server, "sam")
    # 1. The queue: Maria is on the line, waiting for a person.
    await page.goto("/console/escalations")
    row = page.locator(f'#escalations tr[data-ticket-id="{ticket.ticket_id}"]')
    await row.wait_for()
    assert "Maria Gonzalez" in await row.inner_text()
    # 2. Accept: the handover note and the customer's context come before joining.
    await row.locator("button.accept").click()
    await page.wait_for_url(f"**/console/escalations/{ticket.ticket_id}")
    assert "Maria Gonzalez" in await page.inner_text("#ctx-name")
    assert ticket.ticket_id in (await page.locator("#ctx-tickets a").first.get_attribute("href") or "")
    assert f"{call_id}-before" in (await page.locator("#ctx-calls a").first.get_attribute("href") or "")
    await page.screenshot(path=str(SHOTS / "escalation-context.png"), full_page=True)
    # 3. Join the call: the same context beside the transcript.
    await page.click("#join-call")
    await page.wait_for_url(f"**/console/calls/{call_id}")
    assert "Maria Gonzalez" in await page.inner_text("#ctx-name")
    await page.fill("#say-text", "Hi Maria, I can approve that refund for you.")
    await page.click("#say-btn")
    await until(lambda: _has(page, lambda ls: any(ln["role"] == "human" for ln in ls)), "Sam's line")
    # 4. Back on the ticket: a wrap-up code is required to close it.
    await page.goto(f"/console/escalations/{ticket.ticket_id}")
    await page.click("#close-ticket")
    await until(lambda: _text_has(page, "#flash", "Pick a wrap-up code"), "the wrap-up code asked for")
    await page.select_option("#disposition", "refund_issued")
    await page.fill("#wrapup-note", "Refunded $120 as a one-off.")
    await page.screenshot(path=str(SHOTS / "wrap-up.png"), full_page=True)
    await page.click("#close-ticket")
    await page.wait_for_url("**/console/escalations")
    await page.goto(f"/console/escalations/{ticket.ticket_id}")
    assert "Closed by sam: refund issued (Refunded $120 as a one-off.)" in await page.inner_text("#wrapup-done")
    # 5. Reported: the wrap-up counts and the audit log.
    counts = await page.evaluate("fetch('/v1/console/wrapups').then(r => r.json())")
    assert counts["refund_issued"] >= 1
    await page.goto("/console/wallboard")
    await until(lambda: _text_has(page, "#wb-updated", "live ·"), "the wallboard's first live update")
    assert "refund issued 1" in await page.inner_text("#wb-wrapups")


async def test_the_wallboard_shows_waiting_service_level_abandonment_outcomes_people_and_who_is_on_the_line(
    browser: Browser,
) -> None:
    # A server of its own: the figures are today's, and the other tests here place calls today too.
    settings = load_settings(redis_url=REDIS_TEST_URL, data_dir=tempfile.mkdtemp(prefix="sb-wallboard-"))
    prefix = f"console-wb-{uuid.uuid4().hex[:10]}"
    await (await Services.open(settings)).aclose()  # the tenant's customers, as a worker seeds them
    queue = open_queue(settings, REDIS_TEST_URL, prefix=prefix)
    await queue.setup()
    try:
        with served(create_app(settings, queue_prefix=prefix)) as srv:
            srv.add_user("sam", PASSWORD, "supervisor")
            srv.add_user("kim", PASSWORD, "supervisor")
            console = srv.app.state.console
            now = datetime.now(UTC)
            # Today: answered in 5 s (resolved), 5 s (escalated) and 60 s (abandoned).
            for i, (wait_ms, outcome) in enumerate(((5000, "resolved"), (5000, "escalated"), (60000, "abandoned"))):
                srv.call(
                    console.records.record_call(
                        _record(f"wb-{i}", "+15550100009", None, outcome),
                        started_at=now - timedelta(seconds=30),
                        duration_s=10,
                        queue_wait_ms=wait_ms,
                    )
                )
            # Two callers wait for the AI (no worker runs), Maria is on the line waiting for a person,
            # and Kim holds another call.
            for i in range(2):
                await queue.admit(
                    CallJob(call_id=f"wb-q{i}", source="simulate", room=f"wb-q{i}", caller_id="+15550100010")
                )
            for call_id, account in (("wb-maria", "NW-1001"), ("wb-held", "")):
                job = CallJob(call_id=call_id, source="simulate", room=call_id, caller_id="+15550100001")
                srv.call(console.feed.call_started(job, worker="w1", resumed_at=0))
                srv.call(
                    console.feed.redis.hset(
                        f"{prefix}:console:call:{call_id}", mapping={"account_id": account, "intent": "billing"}
                    )
                )
            srv.call(
                console.desk.open_ticket(
                    call_id="wb-maria", account_id="NW-1001", reason="requested_human", summary="x", priority=2
                )
            )
            srv.call(console.feed.acquire("wb-held", "kim", mode="take_over", ticket_id="", lease_s=600))
            kim = await logged_in(browser, srv, "kim")
            page = await logged_in(browser, srv, "sam")
            await page.goto("/console/wallboard")
            await until(lambda: _text_has(page, "#wb-updated", "live ·"), "the wallboard's first live update")
            assert await page.inner_text("#wb-waiting") == "3"
            assert "2 for the AI · 1 for a person" in await page.inner_text("#wb-waiting-split")
            assert await page.inner_text("#wb-sla") == "67 %"
            assert await page.inner_text("#wb-abandon") == "33 %"
            assert await page.inner_text("#wb-ai") == "1 / 1"
            assert await page.inner_text("#wb-people") == "1"
            assert await page.inner_text("#wb-people-names") == "sam"
            maria = await page.inner_text('#wb-live tr[data-call-id="wb-maria"]')
            assert "Maria Gonzalez" in maria
            assert "NW-1001" in maria
            assert "billing" in maria
            assert "+1555" not in await page.inner_text("#wb-live")
            assert "kim" in await page.inner_text('#wb-live tr[data-call-id="wb-held"]')
            await page.screenshot(path=str(SHOTS / "wallboard.png"), full_page=True)
            # Updated live: a third caller joins the queue and the board shows it without a reload.
            await queue.admit(CallJob(call_id="wb-q2", source="simulate", room="wb-q2", caller_id="+15550100011"))
            await until(lambda: _text_is(page, "#wb-waiting", "4"), "the new caller on the board", page=page)
            # The live calls list names the customer too.
            await kim.goto("/console/calls")
            row = kim.locator('#live-calls tr[data-call-id="wb-maria"]')
            await row.wait_for()
            assert "Maria Gonzalez" in await row.inner_text()
            await kim.screenshot(path=str(SHOTS / "live-calls-customers.png"))
    finally:
        await queue.aclose()
        client = redis.Redis.from_url(REDIS_TEST_URL)
        try:
            keys = list(client.scan_iter(f"{prefix}:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


async def _count_is(page: Page, selector: str, count: int) -> bool:
    return await page.locator(selector).count() == count


async def _watch_whisper_take_over(page: Page, call_id: str, worker: Any) -> None:
    # The simulated call appears in the live list as soon as a worker answers it.
    row = page.locator(f'#live-calls tr[data-call-id="{call_id}"]')
    await row.wait_for(timeout=60_000)
    await until(lambda: row.inner_text(), "the row's text")
    await page.screenshot(path=str(SHOTS / "live-calls.png"))
    await row.locator("a").click()
    await page.wait_for_url(f"**/console/calls/{call_id}")

    # Whisper once the caller is verified. No language model runs here, so free-text guidance cannot be
    # followed: the supervisor is told so, and the caller never hears it.
    await until(lambda: _has(page, lambda ls: any("you're verified" in ln["text"] for ln in ls)), "verification")
    await page.fill("#whisper-text", WHISPER)
    await page.click("#whisper-btn")
    await until(lambda: _text_has(page, "#flash", "cannot act on that guidance"), "the whisper refused", page=page)
    await page.screenshot(path=str(SHOTS / "whisper-refused.png"))
    # A whisper the flows can follow becomes that action: the call goes to scheduling.
    await page.fill("#whisper-text", "Please transfer this caller to scheduling")
    await page.click("#whisper-btn")
    await until(lambda: _text_has(page, "#flash", "Followed: the call goes to scheduling"), "the whisper followed")
    services = worker.runner.services

    async def rerouted() -> bool:
        state = await services.graph.aget_state({"configurable": {"thread_id": call_id}})
        handoffs = (state.values or {}).get("handoffs", [])
        return any(h["reason"] == "supervisor_reroute" and h["to_agent"] == "scheduling" for h in handoffs)

    # The flows act on it before the caller's next turn (the router may then follow the caller's own topic).
    await until(rerouted, "the re-route in the call's state", page=page)
    assert not any(WHISPER in ln["text"] for ln in await lines(page) if ln["role"] != "event")
    await page.screenshot(path=str(SHOTS / "whisper.png"))

    # Take over: from the next turn the AI says nothing at all, not even a hold line; only Sam speaks.
    await page.click("#take-over-btn")
    await until(lambda: _text_is(page, "#f-controller", "sam"), "sam holding the call", page=page)
    await until(lambda: _callers_after(page, "took over", 2), "two caller turns after the take-over", page=page)
    await page.fill("#say-text", "This is Sam, a supervisor. I can sort out your bill myself.")
    await page.click("#say-btn")
    await until(lambda: _has(page, lambda ls: any(ln["role"] == "human" for ln in ls)), "the human line")
    await until(lambda: _callers_after(page, "took over", 3), "a caller turn after Sam spoke", page=page)
    held = await _since(page, "took over")
    # A turn already running when Sam took over may still answer; none after it does.
    second_caller = [i for i, ln in enumerate(held) if ln["role"] == "caller"][1]
    assert not [ln for ln in held[second_caller:] if ln["role"] == "agent"], held
    assert [ln["agent"] for ln in held if ln["role"] == "human"] == ["sam"]
    await page.screenshot(path=str(SHOTS / "take-over.png"))

    # Send it back to the AI: a specialist answers again.
    await page.click("#release-btn")
    back = await until(
        lambda: _after(page, "sent the call back", lambda a: any(ln["agent"] in SPECIALISTS for ln in a)),
        "the AI again",
    )
    assert any(ln["agent"] in SPECIALISTS for ln in back)
    await page.screenshot(path=str(SHOTS / "released.png"))
    # When the caller's turns are over the footer says the call ended, not "live".
    await until(lambda: _text_is(page, "#stream-state", "call ended"), "the footer saying the call ended", 120, page)
    await page.screenshot(path=str(SHOTS / "call-ended.png"))


async def _accept_and_reply(page: Page, call_id: str, worker: Any) -> None:
    await page.goto("/console/escalations")
    row = page.locator(f'#escalations tr[data-call-id="{call_id}"]')
    await row.wait_for(timeout=60_000)
    assert "requested human" in await row.inner_text()
    await page.screenshot(path=str(SHOTS / "escalations.png"))
    await row.locator("button.accept").click()
    # Warm transfer: the AI's summary first, then join.
    await page.wait_for_url("**/console/escalations/TK*")
    summary = await page.inner_text("#summary")
    assert summary.startswith("Reason: the caller asked for a person.")
    assert "Verified:" in summary
    assert "Wants:" in summary
    await page.screenshot(path=str(SHOTS / "escalation-summary.png"))
    await page.click("#join-call")
    await page.wait_for_url(f"**/console/calls/{call_id}")
    await until(lambda: _text_is(page, "#f-controller", "kim"), "kim holding the call", page=page)
    await page.fill("#say-text", "Hi, this is Kim from Northwind. How can I help?")
    await page.click("#say-btn")
    await until(
        lambda: _has(page, lambda ls: any(ln["role"] == "human" and "Kim from Northwind" in ln["text"] for ln in ls)),
        "Kim's line in the transcript",
        page=page,
    )
    # The human's line reaches the call's own transcript (the graph checkpoint) before the caller's next turn.
    services = worker.runner.services

    async def in_checkpoint() -> bool:
        state = await services.graph.aget_state({"configurable": {"thread_id": call_id}})
        return any(t["role"] == "human" for t in (state.values or {}).get("transcript", []))

    await until(in_checkpoint, "the human line in the checkpoint")
    await until(lambda: _text_is(page, "#stream-state", "live"), "the footer saying the call is live", page=page)
    # Once Kim is on the line the AI stops its hold lines: after the turn that was running when she accepted,
    # no AI line follows a caller turn.
    await until(lambda: _callers_after(page, "accepted the escalation", 2), "two caller turns after the accept")
    joined = await _since(page, "accepted the escalation")
    second_caller = [i for i, ln in enumerate(joined) if ln["role"] == "caller"][1]
    assert not [ln for ln in joined[second_caller:] if ln["role"] == "agent"], joined
    assert all(
        ln["agent"] == "escalation" for ln in await lines(page) if ln["role"] == "agent" and "hold" in ln["text"]
    )
    await page.screenshot(path=str(SHOTS / "human-reply.png"))


async def _text_has(page: Page, selector: str, text: str) -> bool:
    return text in await page.inner_text(selector)


async def _since(page: Page, marker: str) -> list[dict[str, str]]:
    """Every line after the event line containing ``marker`` ([] before it)."""
    all_lines = await lines(page)
    at = next((i for i, ln in enumerate(all_lines) if ln["role"] == "event" and marker in ln["text"]), None)
    return [] if at is None else all_lines[at + 1 :]


async def _callers_after(page: Page, marker: str, count: int) -> bool:
    return sum(1 for ln in await _since(page, marker) if ln["role"] == "caller") >= count


async def _text_is(page: Page, selector: str, text: str) -> bool:
    return (await page.inner_text(selector)).strip() == text


async def _has(page: Page, predicate: Callable[[list[dict[str, str]]], bool]) -> bool:
    return predicate(await lines(page))


async def _after(
    page: Page, marker: str, predicate: Callable[[list[dict[str, str]]], bool]
) -> list[dict[str, str]] | None:
    all_lines = await lines(page)
    if not any(ln["role"] == "event" and marker in ln["text"] for ln in all_lines):
        return None
    after = agent_lines_after(all_lines, marker)
    return after if predicate(after) else None
