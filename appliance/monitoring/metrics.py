"""Prometheus metrics: cheap instruments on the hot path, families built at scrape time.

Owns the instruments and how they read in the Prometheus text format. Recording is a
few integer additions: requests are counted on the event loop (one dict update and one
histogram bucket per request), and queue time, compute time and batch size once per
batch in the batcher's worker thread, not per request. Everything is turned into metric
families only when ``/metrics`` is scraped, by collectors registered on the daemon's
own ``CollectorRegistry`` (never the global one, so one process can hold several
daemons, as tests do). Naming follows https://prometheus.io/docs/practices/naming/:
``appliance_`` prefix, base units (seconds, bytes), ``_total`` on counters.

It does not decide which models exist (``appliance.monitoring.monitor`` tells it) and
never sees tensor values.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from appliance.batcher import BatchRecord

log = logging.getLogger(__name__)

#: Seconds: 100 us (a tiny model on a warm CPU) to 10 s (a large model on a busy box).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Rows per session run; powers of two, like the batch sizes operators configure.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: Requests the status figures remember per model version (rate and quantiles).
_RECENT = 4096
#: Seconds over which the status figures are computed.
RECENT_SECONDS = 60.0


class Histogram:
    """Bucket counts and a sum; the owner serialises access (lock or one thread)."""

    def __init__(self, bounds: Sequence[float]):
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, doc: str, labels: Sequence[str], values: Sequence[str]) -> Metric:
        family = HistogramMetricFamily(name, doc, labels=labels)
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), float(cumulative)))
        family.add_metric(list(values), buckets, self.sum)
        return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class BatchMetrics:
    """Queue time, compute time and batch size of one model version; per batch."""

    def __init__(self) -> None:
        self.queue = Histogram(LATENCY_BUCKETS)
        self.compute = Histogram(LATENCY_BUCKETS)
        self.rows = Histogram(BATCH_BUCKETS)
        self.failed_batches = 0
        self._lock = threading.Lock()  # a model may run several worker threads

    def record(self, record: BatchRecord) -> None:
        with self._lock:
            for queued in record.queue_ns:
                self.queue.observe(queued / 1e9)
            self.compute.observe(record.compute_ns / 1e9)
            self.rows.observe(record.rows)
            if not record.ok:
                self.failed_batches += 1

    def families(self, labels: Sequence[str], values: Sequence[str]) -> list[Metric]:
        with self._lock:
            return [
                self.queue.family(
                    "appliance_queue_duration_seconds",
                    "Time a request waited in its model's queue before its batch ran.",
                    labels,
                    values,
                ),
                self.compute.family(
                    "appliance_compute_duration_seconds",
                    "Time one session run (one batch) took.",
                    labels,
                    values,
                ),
                self.rows.family(
                    "appliance_batch_size_rows",
                    "Rows per session run (dynamic batching).",
                    labels,
                    values,
                ),
            ]


@dataclass(frozen=True)
class Recent:
    """Status figures of one model version over the last ``RECENT_SECONDS``."""

    request_rate: float = 0.0  # requests per second
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0


class RequestMetrics:
    """Requests by model, version and status code, and their end-to-end latency.

    Recorded on the event loop thread only; scrapes (another thread) copy under a lock
    that the event loop takes for a few hundred nanoseconds per request.
    """

    LABELS = ("model", "version", "code")

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], Histogram] = {}
        self._recent: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def record(self, model: str, version: str, code: str, seconds: float) -> None:
        key = (model, version)
        with self._lock:
            counts_key = (model, version, code)
            self._counts[counts_key] = self._counts.get(counts_key, 0) + 1
            histogram = self._latency.get(key)
            if histogram is None:
                histogram = self._latency[key] = Histogram(LATENCY_BUCKETS)
                self._recent[key] = deque(maxlen=_RECENT)
            histogram.observe(seconds)
            self._recent[key].append((time.monotonic(), seconds))

    def recent(self, model: str, version: str) -> Recent:
        with self._lock:
            window = list(self._recent.get((model, version), ()))
        now = time.monotonic()
        kept = [s for t, s in window if now - t <= RECENT_SECONDS]
        if not kept:
            return Recent()
        # A full ring may cover less than the window: divide by the span it covers.
        oldest = now - RECENT_SECONDS
        if len(window) == _RECENT and window[0][0] > oldest:
            oldest = window[0][0]
        span = max(now - oldest, 1.0)
        p50, p99 = np.percentile(np.asarray(kept) * 1e3, [50, 99])
        return Recent(len(kept) / span, float(p50), float(p99))

    def families(self) -> list[Metric]:
        requests = CounterMetricFamily(
            "appliance_requests",
            "Inference requests (ModelInfer and each ModelStreamInfer message) by gRPC "
            "status code.",
            labels=self.LABELS,
        )
        with self._lock:
            counts = sorted(self._counts.items())
            latency = [(k, h.family(
                "appliance_request_duration_seconds",
                "End-to-end time of an inference request in the server, decode to encode.",
                ("model", "version"),
                k,
            )) for k, h in sorted(self._latency.items())]  # fmt: skip
        for labels, count in counts:
            requests.add_metric(list(labels), float(count))
        return [requests, *merge_families(f for _, f in latency)]


#: Seconds to the first token: a warm tiny model on CPU (ms) to a long prompt on a busy box.
TTFT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: Seconds between tokens of one sequence: one engine step, a few batched rows.
INTER_TOKEN_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


@dataclass(frozen=True)
class RecentGeneration:
    """Status figures of one generative version over the last ``RECENT_SECONDS``."""

    tokens_per_s: float = 0.0
    ttft_p50_ms: float = 0.0
    ttft_p99_ms: float = 0.0


class GenerationMetrics:
    """Time to first token, inter-token latency, token counts and active sequences of one
    generative version. Tokens are recorded by its engine thread, sequences started on
    the event loop; both under one lock (a few hundred nanoseconds a token)."""

    LABELS = ("model", "version")

    def __init__(self) -> None:
        self.ttft = Histogram(TTFT_BUCKETS)
        self.inter_token = Histogram(INTER_TOKEN_BUCKETS)
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.active = 0
        self._recent_ttft: deque[tuple[float, float]] = deque(maxlen=_RECENT)
        self._recent_tokens: deque[tuple[float, int]] = deque(maxlen=_RECENT)
        self._lock = threading.Lock()

    def sequence_started(self, prompt_tokens: int) -> None:
        with self._lock:
            self.active += 1
            self.prompt_tokens += prompt_tokens

    def first_token(self, seconds: float) -> None:
        with self._lock:
            self.ttft.observe(seconds)
            self.generated_tokens += 1
            self._recent_ttft.append((time.monotonic(), seconds))

    def next_token(self, seconds: float) -> None:
        with self._lock:
            self.inter_token.observe(seconds)
            self.generated_tokens += 1

    def sequence_ended(self, generated: int) -> None:
        with self._lock:
            self.active -= 1
            self._recent_tokens.append((time.monotonic(), generated))

    def recent(self) -> RecentGeneration:
        now = time.monotonic()
        with self._lock:
            ttft = [s for t, s in self._recent_ttft if now - t <= RECENT_SECONDS]
            stamps = [(t, n) for t, n in self._recent_tokens if now - t <= RECENT_SECONDS]
        if not ttft and not stamps:
            return RecentGeneration()
        span = max(now - min((t for t, _ in stamps), default=now), 1.0)
        rate = sum(n for _, n in stamps) / span
        if not ttft:
            return RecentGeneration(tokens_per_s=rate)
        p50, p99 = np.percentile(np.asarray(ttft) * 1e3, [50, 99])
        return RecentGeneration(rate, float(p50), float(p99))

    def families(self, values: Sequence[str]) -> list[Metric]:
        labels = list(values)
        with self._lock:
            histograms = [
                self.ttft.family(
                    "appliance_time_to_first_token_seconds",
                    "Time from a generation request's arrival to its first generated token.",
                    self.LABELS,
                    values,
                ),
                self.inter_token.family(
                    "appliance_inter_token_latency_seconds",
                    "Time between two generated tokens of one sequence.",
                    self.LABELS,
                    values,
                ),
            ]
            prompt, generated, active = self.prompt_tokens, self.generated_tokens, self.active
        counters = []
        for name, doc, value in (
            ("appliance_prompt_tokens", "Prompt tokens of generation requests.", prompt),
            ("appliance_generated_tokens", "Tokens generated.", generated),
        ):
            family = CounterMetricFamily(name, doc, labels=self.LABELS)
            family.add_metric(labels, float(value))
            counters.append(family)
        gauge = GaugeMetricFamily(
            "appliance_active_sequences",
            "Generations in flight: running in the engine or waiting for a batch slot.",
            labels=self.LABELS,
        )
        gauge.add_metric(labels, float(active))
        return [*histograms, *counters, gauge]


def merge_families(families: Iterable[Metric]) -> list[Metric]:
    """One family per metric name, samples of every label set in it."""
    merged: dict[str, Metric] = {}
    for family in families:
        if family.name in merged:
            merged[family.name].samples.extend(family.samples)
        else:
            merged[family.name] = family
    return list(merged.values())


class ProcessCollector:
    """CPU time, memory and threads of the daemon process (psutil)."""

    def __init__(self) -> None:
        self._process = psutil.Process()

    def collect(self) -> Iterator[Metric]:
        with self._process.oneshot():
            cpu = self._process.cpu_times()
            memory = self._process.memory_info()
            threads = self._process.num_threads()
        yield CounterMetricFamily(
            "appliance_process_cpu_seconds",
            "CPU time of the daemon process, user and system.",
            value=cpu.user + cpu.system,
        )
        yield GaugeMetricFamily(
            "appliance_process_resident_memory_bytes",
            "Resident memory of the daemon process.",
            value=memory.rss,
        )
        yield GaugeMetricFamily(
            "appliance_process_virtual_memory_bytes",
            "Virtual memory of the daemon process.",
            value=memory.vms,
        )
        yield GaugeMetricFamily(
            "appliance_process_threads", "Threads of the daemon process.", value=threads
        )


class GpuCollector:
    """Memory and utilisation of each NVIDIA GPU (NVML); ``create`` gives None without one."""

    def __init__(self, nvml: Any, handles: list[Any]):
        self._nvml = nvml
        self._handles = handles

    @classmethod
    def create(cls) -> GpuCollector | None:
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:  # NVMLError (no driver, no device) or no library: no GPU metrics
            return None
        if not handles:
            pynvml.nvmlShutdown()
            return None
        return cls(pynvml, handles)

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception as exc:  # NVMLError; shutting down anyway
            log.debug("NVML shutdown failed: %s", exc)

    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            "appliance_gpu_memory_used_bytes", "GPU memory in use.", labels=["gpu"]
        )
        total = GaugeMetricFamily(
            "appliance_gpu_memory_total_bytes", "GPU memory in all.", labels=["gpu"]
        )
        busy = GaugeMetricFamily(
            "appliance_gpu_utilization_ratio",
            "Share of the last sample period the GPU was busy (0 to 1).",
            labels=["gpu"],
        )
        for index, handle in enumerate(self._handles):
            try:
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            except Exception as exc:  # NVMLError: a GPU fell off the bus; skip it
                log.warning("GPU %d: NVML query failed: %s", index, exc)
                continue
            used.add_metric([str(index)], float(memory.used))
            total.add_metric([str(index)], float(memory.total))
            busy.add_metric([str(index)], rates.gpu / 100.0)
        yield from (used, total, busy)


__all__ = [
    "BATCH_BUCKETS",
    "LATENCY_BUCKETS",
    "RECENT_SECONDS",
    "BatchMetrics",
    "GenerationMetrics",
    "GpuCollector",
    "Histogram",
    "ProcessCollector",
    "Recent",
    "RecentGeneration",
    "RequestMetrics",
    "merge_families",
]
