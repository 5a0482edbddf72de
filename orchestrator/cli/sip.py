"""`switchboard sip setup` (LiveKit SIP's inbound trunk and dispatch rule) and `sip demo` (SIP phones, measured)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer

from orchestrator.cli.errors import fail, quiet_logs
from orchestrator.cli.stack import DEFAULT_SERVER, ServerOpt

sip_app = typer.Typer(help="Telephony through LiveKit SIP: the trunk and dispatch rule that admit phone calls.")

# Found again by these names, so a second run creates nothing.
TRUNK_NAME = "switchboard-inbound"
RULE_NAME = "switchboard-calls"
DEFAULT_ROOM_PREFIX = "call-"
_NUMBER = re.compile(r"^\+?[0-9]{3,15}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# A server that does not answer within this is unreachable for a setup command.
API_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SipSetup:
    """What `sip setup` found or created on the server."""

    trunk_id: str
    trunk_created: bool
    numbers: list[str]
    allowed_addresses: list[str]
    rule_id: str
    rule_created: bool
    room_prefix: str
    # An older rule of ours (rooms named by the caller's number) was replaced in place.
    rule_updated: bool = False

    def public(self) -> dict[str, Any]:
        return asdict(self)


def api_url(url: str) -> str:
    """The server's HTTP API address from a LIVEKIT_URL (ws:// and wss:// name the same server).

    Raises:
        ValueError: Not a ws, wss, http or https URL with a host.
    """
    parts = urlsplit(url.strip())
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ValueError(f"LIVEKIT_URL must be a ws://, wss://, http:// or https:// URL with a host, not {url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


def check_inputs(numbers: list[str], allowed: list[str], room_prefix: str) -> None:
    """Refuse what the server would refuse, or accept too widely, before any request.

    Raises:
        ValueError: The first bad input, said in one line.
    """
    for number in numbers:
        if not _NUMBER.match(number):
            raise ValueError(f"--number {number!r} is not a phone number (digits, optionally after a +)")
    for address in allowed:
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise ValueError(f"--allowed-address {address!r} is not an IP address or network") from None
    if not numbers and not allowed:
        # livekit-server refuses an inbound trunk that would take a call from anyone to any number.
        raise ValueError("give the trunk's --number (repeatable) or the --allowed-address of the SIP provider")
    if not _PREFIX.match(room_prefix):
        raise ValueError(f"--room-prefix {room_prefix!r}: 1 to 40 letters, digits, '-' or '_'")


def call_rooms_rule(room_prefix: str) -> Any:
    """The dispatch rule that gives each call a room of its own, named ``<prefix>_<number dialled>_<random>``.

    A callee rule with ``randomize``: livekit-server (livekit/protocol's ``EvaluateDispatchRule``) names the room
    after the number the caller dialled, our trunk's, plus a random suffix. An individual rule would name it
    ``<prefix>_<caller's number>_<random>``, and the caller's number would reach call jobs, logs, webhooks and
    metrics with the room name. The caller's number still reaches the call as its ``sip.phoneNumber``
    attribute. The room's prefix makes its room_started webhook admit it as a call; no agent is named, as our
    queue dispatches one.
    """
    from livekit import api

    return api.SIPDispatchRule(dispatch_rule_callee=api.SIPDispatchRuleCallee(room_prefix=room_prefix, randomize=True))


def _names_rooms_by_number_dialled(rule: Any) -> bool:
    return bool(rule.rule.HasField("dispatch_rule_callee") and rule.rule.dispatch_rule_callee.randomize)


async def ensure_sip(
    url: str, key: str, secret: str, *, numbers: list[str], allowed: list[str], room_prefix: str
) -> SipSetup:
    """Find our trunk and dispatch rule on the server, creating whichever is missing and updating an older rule."""
    import aiohttp
    from livekit import api

    lk = api.LiveKitAPI(url, key, secret, timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_S), failover=False)
    try:
        trunks = (await lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())).items
        trunk = next((t for t in trunks if t.name == TRUNK_NAME), None)
        trunk_created = trunk is None
        if trunk is None:
            info = api.SIPInboundTrunkInfo(name=TRUNK_NAME, numbers=numbers, allowed_addresses=allowed)
            trunk = await lk.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=info))
        rules = (await lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items
        rule = next((r for r in rules if r.name == RULE_NAME), None)
        rule_created = rule is None
        rule_updated = False
        if rule is None:
            rule = await lk.sip.create_dispatch_rule(
                api.CreateSIPDispatchRuleRequest(
                    dispatch_rule=api.SIPDispatchRuleInfo(
                        name=RULE_NAME, trunk_ids=[trunk.sip_trunk_id], rule=call_rooms_rule(room_prefix)
                    )
                )
            )
        elif not _names_rooms_by_number_dialled(rule):
            # Made by an older `sip setup` (an individual rule: the caller's number in every room name).
            old = rule.rule.dispatch_rule_individual.room_prefix or rule.rule.dispatch_rule_callee.room_prefix
            rule = await lk.sip.update_dispatch_rule_fields(
                rule.sip_dispatch_rule_id, rule=call_rooms_rule(old or room_prefix)
            )
            rule_updated = True
        prefix = rule.rule.dispatch_rule_callee.room_prefix if rule.rule.HasField("dispatch_rule_callee") else ""
        return SipSetup(
            trunk_id=trunk.sip_trunk_id,
            trunk_created=trunk_created,
            numbers=list(trunk.numbers),
            allowed_addresses=list(trunk.allowed_addresses),
            rule_id=rule.sip_dispatch_rule_id,
            rule_created=rule_created,
            room_prefix=prefix,
            rule_updated=rule_updated,
        )
    finally:
        await lk.aclose()


def _describe(exc: BaseException, url: str) -> str | None:
    """One line for a failure to talk to the server, or None for an error of ours."""
    import aiohttp
    from livekit import api

    if isinstance(exc, api.TwirpError):
        return f"LiveKit at {url} refused the request: {exc.message} ({exc.code})"
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot reach LiveKit at {url}: {detail}"
    return None


def setup(
    number: Annotated[
        list[str] | None, typer.Option("--number", help="A number the trunk answers (repeatable).")
    ] = None,
    allowed_address: Annotated[
        list[str] | None,
        typer.Option("--allowed-address", help="An address or network the SIP provider calls from (repeatable)."),
    ] = None,
    room_prefix: Annotated[
        str, typer.Option(help="Call rooms' prefix: the API's --room-prefix, whose rooms it admits.")
    ] = DEFAULT_ROOM_PREFIX,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trunk and rule as JSON.")] = False,
) -> None:
    """Create the inbound trunk and the dispatch rule on LIVEKIT_URL, unless they are there already.

    Each inbound call then gets a room of its own, named after the room prefix and the number dialled (never
    the caller's), and is admitted by the server's webhook and queued like any other call. A second run finds
    both and creates nothing; a rule of an older version, which named rooms by the caller's number, is updated.
    """
    from orchestrator.config import load_settings

    quiet_logs()
    numbers, allowed = list(number or []), list(allowed_address or [])
    settings = load_settings()  # an invalid setting: one line and exit 2, at the CLI's boundary
    if not settings.livekit_url:
        fail("LIVEKIT_URL is not set: it names the LiveKit server whose SIP service takes the calls")
    try:
        url = api_url(settings.livekit_url)
        check_inputs(numbers, allowed, room_prefix)
    except ValueError as exc:
        fail(str(exc))
    secret = settings.livekit_api_secret.get_secret_value()
    try:
        done = asyncio.run(
            ensure_sip(url, settings.livekit_api_key, secret, numbers=numbers, allowed=allowed, room_prefix=room_prefix)
        )
    except Exception as exc:
        line = _describe(exc, url)
        if line is None:
            raise
        fail(line)
    if as_json:
        typer.echo(json.dumps(done.public()))
        return
    said = "created" if done.trunk_created else "found"
    answers = ", ".join(done.numbers) or "any number"
    sources = ", ".join(done.allowed_addresses) or "any address (with a number)"
    typer.echo(f"inbound trunk {done.trunk_id} ({TRUNK_NAME}) {said}: answers {answers} from {sources}")
    said = "created" if done.rule_created else "updated" if done.rule_updated else "found"
    typer.echo(
        f"dispatch rule {done.rule_id} ({RULE_NAME}) {said}: each call in a room of its own, "
        f"named {done.room_prefix}_<number dialled>_<random> (never the caller's number)"
    )


# Demo customers (orchestrator/domain/README.md) and their ZIP codes.
DEMO_CUSTOMERS = [("+15550100001", "10027"), ("+15550100002", "10453"), ("+15550100003", "11375")]
DEMO_QUESTION = "What's my balance?"
# Each phone's own SIP port in the caller's namespace, this plus its index (the desk of the transfer test is not here).
PHONE_BASE_PORT = 5062
# A phone waits at most a minute to be answered and 150 s for each reply; a whole call far less than this.
PHONE_CAP_S = 600.0
RECORD_CAP_S = 60.0


def demo(
    calls: Annotated[int, typer.Option("--calls", min=1, help="Phone calls to place.")] = 4,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Calls at once.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    livekit_server: ServerOpt = DEFAULT_SERVER,
) -> None:
    """SIP phones through the real livekit-sip into the real stack: each asks for its balance and gives its ZIP.

    Every other caller keys its ZIP code (RFC 4733), the others say it. Prints calls, completed, lost,
    verified_by_keypad, verified_by_voice, first audio at the phone after its question (P50/P95/P99) and wer
    (what the agent heard of the spoken question, over G.711). Needs root (network namespaces) and the built
    livekit-server and livekit-sip (beside it). `switchboard demo --sip` is the same.
    """
    demo_sip(calls=calls, concurrency=concurrency, as_json=as_json, server=livekit_server)


def demo_sip(*, calls: int, concurrency: int, as_json: bool, server: Path) -> None:
    """`switchboard demo --sip` and `sip demo`: one line and exit 2 when the machine cannot run it, 1 on a loss."""
    import shutil

    from orchestrator.cli.stack import check_machine, run_folder, sigterm_as_interrupt, started_stack
    from orchestrator.config import load_settings
    from orchestrator.devstack.sip import sip_setup, start_sip
    from orchestrator.devstack.stack import StackFailed

    quiet_logs()
    load_settings()
    # Built beside livekit-server (deploy/dev/tools.sh).
    livekit_sip = server.parent / "livekit-sip"
    if not livekit_sip.is_file():
        fail(f"no livekit-sip at {livekit_sip}: run `deploy/dev/tools.sh livekit-sip` (make tools)")
    if shutil.which("flite") is None:
        fail("flite is not installed (it speaks the callers' words): apt-get install -y flite")
    check_machine(server)
    with (
        sigterm_as_interrupt(),
        run_folder(None, "switchboard-sip-demo-") as run_dir,
        started_stack(server, run_dir, slots=concurrency, show=not as_json) as stack,
    ):
        try:
            start_sip(stack, binary=livekit_sip)
            sip_setup(stack)
        except StackFailed as exc:
            fail(f"livekit-sip did not start: {str(exc).splitlines()[0]} (logs: {run_dir / 'stack'})", 1)
        summary = asyncio.run(_phone_demo(stack, run_dir, calls=calls, concurrency=concurrency))
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            typer.echo(f"{key}: {json.dumps(value)}")
    if summary["lost"]:
        fail(f"{summary['lost']} of {calls} calls were lost", 1)


@dataclass(frozen=True)
class PhonePlan:
    """One demo call: the customer's number, their ZIP, and whether they key it or say it."""

    number: str
    zip_code: str
    keyed: bool


def phone_plans(calls: int) -> list[PhonePlan]:
    """The demo customers round-robin; even calls key their ZIP, odd ones say it."""
    return [PhonePlan(*DEMO_CUSTOMERS[n % len(DEMO_CUSTOMERS)], keyed=n % 2 == 0) for n in range(calls)]


async def _place_phone(stack: Any, n: int, plan: PhonePlan, out: Any) -> dict[str, Any]:
    """One pjsua2 phone (`devstack.sip_phone`) in the caller's namespace calling the trunk; its JSON line."""
    import sys

    from orchestrator.devstack import sip_phone
    from orchestrator.devstack.calls import spoken
    from orchestrator.devstack.sip import DIALLED, SIP_PORT, say_at_8k

    out.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {
        "bind": stack.pair.caller_ip,
        "port": PHONE_BASE_PORT + n,
        "uri": f"sip:{DIALLED}@{stack.pair.server_ip}:{SIP_PORT}",
        "caller": plan.number,
        "codecs": ["PCMU/8000"],
        "wav": str(await asyncio.to_thread(say_at_8k, DEMO_QUESTION, out / "question.wav")),
        "out": str(out),
    }
    if plan.keyed:
        cfg["keys"] = f"{plan.zip_code}#"
    else:
        # Digit by digit, as people give a ZIP code (flite reads "10027" as a number).
        cfg["zip_wav"] = str(await asyncio.to_thread(say_at_8k, spoken(plan.zip_code), out / "zip.wav"))
    argv = [sys.executable, sip_phone.__file__, json.dumps(cfg)]
    try:
        lines, code = await stack.run_caller(argv, out / "phone.log", PHONE_CAP_S)
    except TimeoutError:
        return {"error": f"the phone did not finish within {PHONE_CAP_S:.0f} s"}
    with contextlib.suppress(json.JSONDecodeError, IndexError):
        found: dict[str, Any] = json.loads(lines[-1])
        return found
    return {"error": f"the phone exited {code} without a report (see {out / 'phone.log'})"}


async def _phone_demo(stack: Any, run_dir: Any, *, calls: int, concurrency: int) -> dict[str, Any]:
    from orchestrator.devstack.calls import outcomes, summarize

    gate = asyncio.Semaphore(concurrency)
    plans = phone_plans(calls)
    loop = asyncio.get_running_loop()
    placed_at: dict[int, float] = {}

    async def one(n: int) -> dict[str, Any]:
        async with gate:
            placed_at[n] = loop.time()
            return await _place_phone(stack, n, plans[n], run_dir / f"call-{n}")

    phones = list(await asyncio.gather(*(one(n) for n in range(calls))))
    # The queue's counters once it holds nothing (no room ids: a SIP call's room is livekit-sip's).
    settled = await outcomes(stack, [], wer=False)
    records, states = await _records_and_states(stack, sum(1 for p in phones if p.get("answered")))
    # A record is a phone's: the n-th call from a number, by start, is the n-th phone placed with that number.
    by_number: dict[str, list[int]] = {}
    for n in sorted(range(calls), key=lambda n: placed_at[n]):
        by_number.setdefault(plans[n].number, []).append(n)
    keyed_verified = spoken_verified = 0
    for record in sorted(records, key=lambda r: str(r["started_at"])):
        # The checkpoint's caller id is the From number livekit-sip put on its participant.
        queue_of_number = by_number.get(str(states[record["call_id"]].get("caller_id")), [])
        if not queue_of_number:
            continue
        n = queue_of_number.pop(0)
        if (states[record["call_id"]].get("verification") or {}).get("status") == "verified":
            if plans[n].keyed:
                keyed_verified += 1
            else:
                spoken_verified += 1
    callers = [{"turns": [{"first_audio_ms": p.get("first_audio_ms")}], **p} for p in phones]
    got = {"records": {r["call_id"]: r for r in records}, "wers": [], "stats": settled["stats"]}
    summary = summarize(calls, callers, got)
    summary["verified_by_keypad"] = keyed_verified
    summary["verified_by_voice"] = spoken_verified
    summary["wer"] = _heard_wer(list(states.values()))
    summary["unanswered"] = sum(1 for p in phones if not p.get("answered"))
    # Why a call did not complete, in its own words: what the agent heard and said.
    summary["not_completed"] = [
        {
            "call_id": r["call_id"],
            "outcome": r["outcome"],
            "transcript": [[t["role"], t["text"]] for t in states[r["call_id"]].get("transcript", [])],
        }
        for r in records
        if r["outcome"] not in ("resolved", "escalated")
    ]
    keys = ["calls", "completed", "lost", "verified_by_keypad", "verified_by_voice", "first_audio_ms", "wer"]
    return {**{k: summary[k] for k in keys}, **{k: v for k, v in summary.items() if k not in keys}}


async def _records_and_states(stack: Any, answered: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every call's record (waiting for one per answered phone, a while) and its checkpoint, by call id."""
    from orchestrator.config import load_settings
    from orchestrator.runtime import Services
    from orchestrator.store.records import CallStore
    from orchestrator.worker.runner import checkpoint_state

    loop = asyncio.get_running_loop()
    async with await Services.open(load_settings(data_dir=stack.data_dir), seed=False) as services:
        store = CallStore(services.engine)
        deadline = loop.time() + RECORD_CAP_S
        while True:
            views = await store.list_calls(limit=10_000)
            if len(views) >= answered or loop.time() >= deadline:
                break
            await asyncio.sleep(0.5)
        records = [view.to_json() for view in views]
        return records, {r["call_id"]: await checkpoint_state(services, r["call_id"]) for r in records}


def _heard_wer(checkpoints: list[dict[str, Any]]) -> float | None:
    """The mean WER of what the agent heard of each caller's spoken question (it came over G.711)."""
    from orchestrator.telemetry.wer import word_error_rate

    wers = [
        word_error_rate(DEMO_QUESTION, first["text"])
        for state in checkpoints
        if (first := next((t for t in state.get("transcript", []) if t["role"] == "caller"), None)) is not None
    ]
    return round(sum(wers) / len(wers), 3) if wers else None


def register(app: typer.Typer) -> None:
    """Add `sip setup` and `sip demo` to the CLI."""
    sip_app.command("setup")(setup)
    sip_app.command("demo")(demo)
    app.add_typer(sip_app, name="sip")
