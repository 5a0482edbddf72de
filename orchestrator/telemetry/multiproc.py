"""Job processes' metrics, shared through prometheus_client's multiprocess files and served by their parent."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Sample

from orchestrator.telemetry import names

log = logging.getLogger(__name__)

# A ratio of one process's calls: summing it across processes means nothing, so it stays per process.
_NOT_ADDITIVE = frozenset({names.prometheus_name(names.M_SUCCESS_RATE)})
# How often a job process rewrites its figures between calls (each finished call also writes at once).
WRITE_INTERVAL_S = 5.0


class MultiprocessWriter:
    """Copies one process's Prometheus registry into multiprocess files in `directory`, as cumulative values.

    livekit runs every call in a job process of its own, which nobody can scrape; livekit's own metrics
    already use prometheus_client's multiprocess mode for that, and this puts ours beside them in the
    same directory and format. The parent's `/metrics` (`multiprocess_text`) then adds every process's
    counters and histograms, those of job processes that have exited included, as Prometheus expects of
    a counter. Gauges are summed over the processes still running (`livesum`).

    Our file names carry an `sb` before the pid, so they never collide with the files prometheus_client
    itself keeps for livekit's metrics in the same process.
    """

    def __init__(self, registry: CollectorRegistry, directory: str | Path, *, interval_s: float = WRITE_INTERVAL_S):
        self.registry = registry
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        pid = f"sb{os.getpid()}"
        # prometheus_client leaves MmapedDict untyped.
        self._files: dict[str, MmapedDict] = {
            "counter": MmapedDict(str(self.directory / f"counter_{pid}.db")),  # type: ignore[no-untyped-call]
            "histogram": MmapedDict(str(self.directory / f"histogram_{pid}.db")),  # type: ignore[no-untyped-call]
            "gauge": MmapedDict(str(self.directory / f"gauge_livesum_{pid}.db")),  # type: ignore[no-untyped-call]
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), name="metrics-writer", daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.write()

    def write(self) -> None:
        """Write the registry's current values (never raises: a metrics failure must not reach a call)."""
        try:
            with self._lock:
                if self._stop.is_set() and not self._files:
                    return
                self._write()
        except Exception:
            log.warning("could not write this process's metrics for its parent", exc_info=True)

    def _write(self) -> None:
        for family in self.registry.collect():
            if not family.name.startswith("cc_") or family.name in _NOT_ADDITIVE:
                continue
            if family.type == "counter":
                target = self._files["counter"]
                for s in family.samples:
                    if s.name.endswith("_total"):
                        self._put(target, family.name, s.name, s.labels, s.value, family.documentation)
            elif family.type == "gauge":
                for s in family.samples:
                    self._put(self._files["gauge"], family.name, s.name, s.labels, s.value, family.documentation)
            elif family.type == "histogram":
                self._write_histogram(family.name, family.samples, family.documentation)

    def _write_histogram(self, name: str, samples: Sequence[Sample], help_text: str) -> None:
        target = self._files["histogram"]
        # The registry's buckets are cumulative; multiprocess files hold each bucket's own count.
        previous: dict[tuple[tuple[str, str], ...], float] = {}
        for s in samples:
            labels, value, sample_name = s.labels, s.value, s.name
            if sample_name.endswith("_bucket"):
                series = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                own = value - previous.get(series, 0.0)
                previous[series] = value
                self._put(target, name, sample_name, labels, own, help_text)
            elif sample_name.endswith("_sum"):
                self._put(target, name, sample_name, labels, value, help_text)

    @staticmethod
    def _put(
        target: MmapedDict, family: str, sample: str, labels: dict[str, str], value: float, help_text: str
    ) -> None:
        keys = sorted(labels)
        key = mmap_key(family, sample, keys, [labels[k] for k in keys], help_text)
        target.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]  # untyped upstream

    def close(self) -> None:
        """Write once more and release the files (they stay: an exited process's counters still count)."""
        self.write()
        self._stop.set()
        with self._lock:
            for f in self._files.values():
                f.close()  # type: ignore[no-untyped-call]  # untyped upstream
            self._files = {}


def multiprocess_text(directory: str | Path) -> tuple[bytes, str]:
    """The `/metrics` body of every process that wrote into `directory` (ours and livekit's), and its type."""
    registry = CollectorRegistry()
    if not Path(directory).is_dir():
        # Before the agent server made it (it does as it starts): nothing measured yet.
        return b"", CONTENT_TYPE_LATEST
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]  # untyped upstream
    return generate_latest(registry), CONTENT_TYPE_LATEST
