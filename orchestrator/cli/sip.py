"""`switchboard sip setup` (LiveKit SIP's inbound trunk and dispatch rule) and `sip demo` (phone callers, measured)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from dataclasses import asdict, dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer

from orchestrator.cli.errors import fail, quiet_logs

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


# Demo customers (orchestrator/domain/README.md) and the ZIP code each keys.
DEMO_CUSTOMERS = [("+15550100001", "10027"), ("+15550100002", "10453"), ("+15550100003", "11375")]
DEMO_QUESTION = "What's my balance?"


def demo(
    calls: Annotated[int, typer.Option("--calls", min=1, help="Phone callers to place.")] = 4,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Calls at once.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Phone callers through the real stack: each asks for its balance and keys its ZIP code, then a summary.

    Each caller is the SIP participant LiveKit SIP makes of a phone call (its number as sip.phoneNumber,
    keyed digits as SIP DTMF, speech over G.711), in a room as the dispatch rule names it; livekit-sip itself
    is not in the path. Prints calls, completed, lost, verified_by_keypad, first audio at the caller
    (P50/P95/P99 over every answered turn) and wer (what the agent heard of the callers' speech). Needs root
    (network namespaces) and the built livekit-server.
    """
    from orchestrator.cli.stack import check_machine, run_folder, sigterm_as_interrupt, started_stack
    from orchestrator.config import load_settings
    from orchestrator.devstack.stack import LIVEKIT_SERVER

    quiet_logs()
    load_settings()
    check_machine(LIVEKIT_SERVER)
    with (
        sigterm_as_interrupt(),
        run_folder(None, "switchboard-sip-demo-") as run_dir,
        started_stack(LIVEKIT_SERVER, run_dir, slots=concurrency, show=not as_json) as stack,
    ):
        summary = asyncio.run(_phone_demo(stack, run_dir, calls=calls, concurrency=concurrency))
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            typer.echo(f"{key}: {json.dumps(value)}")
    if summary["lost"]:
        fail(f"{summary['lost']} of {calls} calls were lost", 1)


async def _phone_demo(stack: Any, run_dir: Any, *, calls: int, concurrency: int) -> dict[str, Any]:
    from orchestrator.devstack.calls import outcomes, summarize
    from orchestrator.devstack.sip import place_phone_call

    gate = asyncio.Semaphore(concurrency)
    plans = [DEMO_CUSTOMERS[n % len(DEMO_CUSTOMERS)] for n in range(calls)]
    for n in range(calls):
        (run_dir / f"call-{n}").mkdir(parents=True, exist_ok=True)

    async def one(n: int) -> dict[str, Any]:
        number, zip_code = plans[n]
        steps = [{"say": DEMO_QUESTION}, {"keys": f"{zip_code}#"}]
        async with gate:
            return await place_phone_call(stack, number, steps, run_dir / f"call-{n}")

    callers = list(await asyncio.gather(*(one(n) for n in range(calls))))
    got = await outcomes(stack, callers, wer=False)
    summary = summarize(calls, callers, got)
    checkpoints = await _checkpoints(stack, [c["room_sid"] for c in callers if c.get("room_sid")])
    verified = sum(1 for state in checkpoints if (state.get("verification") or {}).get("status") == "verified")
    summary["verified_by_keypad"] = verified
    summary["wer"] = _heard_wer(checkpoints)
    keys = ["calls", "completed", "lost", "verified_by_keypad", "first_audio_ms", "wer"]
    return {**{k: summary[k] for k in keys}, **{k: v for k, v in summary.items() if k not in keys}}


async def _checkpoints(stack: Any, room_sids: list[str]) -> list[dict[str, Any]]:
    from orchestrator.config import load_settings
    from orchestrator.runtime import Services
    from orchestrator.worker.runner import checkpoint_state

    async with await Services.open(load_settings(data_dir=stack.data_dir), seed=False) as services:
        return [await checkpoint_state(services, f"lk-{sid}") for sid in room_sids]


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
