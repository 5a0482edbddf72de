"""Every process serves the metrics the dashboard and the alert rules use: the API, queue workers, agent jobs.

A batch of calls runs through real processes started as the deploy files start them (`switchboard serve`,
`switchboard worker --metrics-port`, the agent worker's pool with a spoken call in a job process); each
process's /metrics is scraped, and every `cc_*` name that deploy/grafana/switchboard.json and
deploy/prometheus/alerts.yml use (read from those files) must be on some page, with a non-zero sample where
the batch did something it measures.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.bench.providers.openai_api import Completion, OpenAIStandin, server_error
from orchestrator.contracts import CallJob
from orchestrator.providers.tts import piper_available
from orchestrator.queue import CallQueue
from orchestrator.queue.outcomes import read_outcomes
from orchestrator.telemetry import names
from tests.conftest import REDIS_TEST_URL
from tests.flow.test_workers import scenario_job

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(
        not piper_available() and shutil.which("flite") is None,
        reason="no local TTS for the spoken call: install Debian flite (apt-get install -y flite) or the piper extra",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
SWITCHBOARD = Path(sys.executable).with_name("switchboard")
POOL = Path(__file__).with_name("metrics_support") / "agent_pool.py"
PROM_NAME = re.compile(r"\b(cc_[a-zA-Z_]+)")
# Names that count events this batch has none of: their series are on the pages, at 0.
NOTHING_HAPPENED = {
    "cc_calls_dead_lettered_total",  # every call of the batch ends
    "cc_cost_unknown_total",  # every provider of the batch has a price
    "cc_queue_depth",  # the queue is empty once the batch is done
    "cc_queue_oldest_wait_seconds",
    "cc_queue_dead_letters",
}
FRUSTRATED = [
    "What's my balance?",
    "That is ridiculous.",
    "Useless! This is ridiculous!!",
    "THIS IS USELESS AND RIDICULOUS!!!",
]
BATCH = [
    "pay the balance",
    "outage check",
    "asks for a human",
    "legal threat",
    "dispute a charge",
    "book a technician visit",
]


def used_names() -> set[str]:
    """Every metric name the dashboard's queries and the alert and recording rules use."""
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    exprs = [str(r["expr"]) for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "switchboard.json").read_text())
    exprs += [str(t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    return {m for e in exprs for m in PROM_NAME.findall(e)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def samples(text: str) -> dict[str, list[float]]:
    """Sample values by sample name (`_bucket`, `_sum`, `_count` apart, as the queries use them)."""
    out: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(float(s.value))
    return out


def wait_for_page(port: int, needle: str, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        try:
            text = scrape(port)
        except (urllib.error.URLError, ConnectionError):
            text = ""
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"port {port}: no {needle!r} on /metrics within {timeout_s:.0f} s:\n{text[:2000]}")


@pytest.fixture
def llm() -> Iterator[OpenAIStandin]:
    """An OpenAI stand-in on loopback, served from a thread of its own while the test drives processes.

    Its first replies are plain answers (the worker meters their tokens); then it answers every request with
    a 500, so the same worker also sees provider errors and falls back to the deterministic flows.
    """
    standin = OpenAIStandin()
    standin.enqueue(*[Completion(text="Sure, I can help with that.", usage=(180, 9)) for _ in range(4)])
    standin.enqueue(*[server_error() for _ in range(400)])
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(standin.start(), loop).result(30)
    try:
        yield standin
    finally:
        asyncio.run_coroutine_threadsafe(standin.aclose(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"mx-{uuid.uuid4().hex[:10]}"
    yield name

    async def clean() -> None:
        q = CallQueue.from_url(REDIS_TEST_URL, prefix=name)
        keys = [k async for k in q.redis.scan_iter(f"{name}:*")]
        if keys:
            await q.redis.delete(*keys)
        await q.aclose()

    asyncio.run(clean())


@pytest.mark.timeout(900)  # four processes start, a batch of text calls and a spoken one run
def test_every_process_exports_the_metrics_the_dashboard_and_alerts_use(
    tmp_path: Path, prefix: str, llm: OpenAIStandin
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": REDIS_TEST_URL,
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "PYTHONWARNINGS": "ignore",
    }
    env.pop("LIVEKIT_URL", None)
    api_port, ports = free_port(), [free_port(), free_port()]
    # The workers' LLM is the stand-in: a few answers, then errors they fall back from.
    worker_env = env | {"OPENAI_API_KEY": "test", "OPENAI_BASE_URL": llm.base_url}
    commands = [
        ([str(SWITCHBOARD), "serve", "--host", "127.0.0.1", "--port", str(api_port), "--prefix", prefix], env),
        *(
            (
                [str(SWITCHBOARD), "worker", "--slots", "2", "--prefix", prefix, "--hold-interval", "0"]
                + ["--metrics-host", "127.0.0.1", "--metrics-port", str(port)],
                worker_env,
            )
            for port in ports
        ),
    ]
    procs = [
        subprocess.Popen(cmd, env=e, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for cmd, e in commands
    ]
    try:
        for port in ports:
            wait_for_page(port, "cc_worker_slots")  # registered: claiming calls
        calls = [f"mx-{i}" for i in range(len(BATCH) * 2 + 1)]

        async def run_batch() -> set[str]:
            q = CallQueue.from_url(REDIS_TEST_URL, prefix=prefix, max_expected_wait_s=1e6)  # type: ignore[arg-type]
            try:
                for i, call_id in enumerate(calls[:-1]):
                    await q.admit(scenario_job(BATCH[i % len(BATCH)], call_id))
                # A caller losing patience: the anomaly detector flags it, whatever the call's outcome.
                await q.admit(
                    CallJob(call_id=calls[-1], source="simulate", caller_id="+15550100001", script=FRUSTRATED)
                )
                deadline = time.monotonic() + 300
                done: set[str] = set()
                while time.monotonic() < deadline and len(done) < len(calls):
                    found, _ = await read_outcomes(q.redis, prefix)
                    done = {o.call_id for o in found}
                    await asyncio.sleep(0.2)
                return done
            finally:
                await q.aclose()

        assert asyncio.run(run_batch()) == set(calls)
        api_page = wait_for_page(api_port, "cc_queue_depth{")
        suffix = uuid.uuid4().hex[:8]
        pool = subprocess.run(
            [sys.executable, str(POOL), str(free_port()), f"call-voice-{suffix}", f"room-{suffix}", prefix],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=ROOT,
            check=True,
        )
        agent = json.loads(pool.stdout.strip().splitlines()[-1])
        assert agent["call_marker"]["status"] == "ended", agent["call_marker"]
        pages = {
            "api": api_page,
            **{f"worker-{i}": scrape(port) for i, port in enumerate(ports)},
            "agent-job": agent["metrics"],
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    by_page = {page: samples(text) for page, text in pages.items()}
    used = used_names()
    assert len(used) >= 20, used
    where = {name: sorted(p for p, s in by_page.items() if name in s) for name in used}
    missing = sorted(name for name, found in where.items() if not found)
    assert missing == [], f"not exported by any process: {missing}"
    zero = sorted(
        name for name in used - NOTHING_HAPPENED if not any(v > 0 for s in by_page.values() for v in s.get(name, []))
    )
    assert zero == [], f"exported, but only zeros after the batch: {zero}"
    # Each process serves what it measures: the queue gauges from the API, text calls from the queue
    # workers, the spoken call's stages and phrase cache from the agent's job process.
    assert "cc_queue_depth" in by_page["api"]
    assert all("cc_calls_total" in by_page[f"worker-{i}"] for i in range(len(ports)))
    workers = [by_page[f"worker-{i}"] for i in range(len(ports))]
    for name in ("cc_provider_errors_total", "cc_provider_fallbacks_total", "cc_usage_tokens_total"):
        assert any(v > 0 for page in workers for v in page.get(name, [])), name
    assert len(llm.requests) > 4, "the workers' calls reached the LLM past its answers"
    assert any(v > 0 for v in by_page["agent-job"]["cc_phrase_cache_lookups_total"])
    # The spoken call's turn splits into every stage, each measured on both turns.
    agent_stages = {
        dict(sm.labels)["stage"]: sm.value
        for family in text_string_to_metric_families(pages["agent-job"])
        for sm in family.samples
        if sm.name == "cc_turn_latency_milliseconds_count"
    }
    assert set(agent_stages) == set(names.STAGES), agent_stages
    assert all(count > 0 for count in agent_stages.values()), agent_stages
    # The phrase cache is counted once, by the cache: no other cache counter on any page.
    cache_names = {n for s in by_page.values() for n in s if "cache" in n and n.startswith("cc_")}
    assert cache_names == {"cc_phrase_cache_lookups_total"}, cache_names
    print("\nmetric names checked against the scrape:")
    for name in sorted(used):
        print(f"  {name}: {', '.join(where[name])}")
