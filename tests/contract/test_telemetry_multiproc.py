"""Job processes' metrics reach their parent's /metrics: summed across processes, exited ones included."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.config import load_settings
from orchestrator.telemetry import names
from orchestrator.telemetry.metrics import CallMetrics
from orchestrator.telemetry.multiproc import multiprocess_text
from orchestrator.telemetry.setup import setup_telemetry

pytestmark = pytest.mark.contract


def _job_process(directory: str, data_dir: str, latencies: list[float]) -> None:
    """One call's process: it meters its call, publishes, and exits without shutting anything down."""
    handles = setup_telemetry(load_settings(data_dir=Path(data_dir)), join_livekit=False, multiprocess_dir=directory)
    metrics = CallMetrics(handles.meter)
    with metrics.in_flight_call("job"):
        for ms in latencies:
            metrics.observe_stage(names.STAGE_STT, ms)
        metrics.calls.add(1, {names.L_OUTCOME: "resolved"})
        metrics.observe_phrase_cache(names.CACHE_HIT)
    handles.publish_metrics()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # The exporter's instrumentation-scope labels are the same on every series: left out for brevity.
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if not k.startswith("otel_scope")))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_histograms_and_gauges_add_up_over_exited_job_processes(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    ctx = mp.get_context("spawn")
    runs = [[120.0, 40.0], [260.0], [30.0, 600.0, 90.0]]
    for latencies in runs:
        proc = ctx.Process(target=_job_process, args=(str(shared), str(tmp_path), latencies))
        proc.start()
        proc.join(120)
        assert proc.exitcode == 0

    body, content_type = multiprocess_text(shared)
    assert content_type.startswith("text/plain")
    samples = _samples(body.decode())
    calls = names.prometheus_name(names.M_CALLS)
    assert samples[(calls, (("outcome", "resolved"),))] == 3
    cache = names.prometheus_name(names.M_PHRASE_CACHE)
    assert samples[(cache, (("result", "hit"),))] == 3
    assert samples[(cache, (("result", "miss"),))] == 0
    latency = names.prometheus_name(names.M_TURN_LATENCY, series="bucket")
    stt = (("stage", "stt"),)
    every = [ms for run in runs for ms in run]
    assert samples[(latency, (("le", "+Inf"), *stt))] == len(every)
    # Buckets are cumulative again after the processes' own counts were added.
    assert samples[(latency, (("le", "50.0"), *stt))] == sum(ms <= 50 for ms in every)
    assert samples[(latency, (("le", "300.0"), *stt))] == sum(ms <= 300 for ms in every)
    assert samples[(names.prometheus_name(names.M_TURN_LATENCY, series="sum"), stt)] == sum(every)
    assert samples[(names.prometheus_name(names.M_TURN_LATENCY, series="count"), stt)] == len(every)
    # Every job's call ended, so nothing is in flight.
    assert samples[(names.prometheus_name(names.M_IN_FLIGHT), (("worker", "job"),))] == 0


def test_an_empty_or_missing_directory_serves_an_empty_page(tmp_path: Path) -> None:
    assert multiprocess_text(tmp_path)[0] == b""
    assert multiprocess_text(tmp_path / "not-yet")[0] == b""
