"""Counters the load-generator processes share with the parent, and their Prometheus view.

Each worker process owns one row of a shared integer array (no locks: one
writer per row) and copies its local counters there every batch; the parent
reads the rows to draw progress, to print the summary and to serve
``/metrics``. ``prometheus_client``'s own multiprocess mode needs a directory
of mmap files and an environment variable set before import; a custom
collector over the shared array is simpler and exact.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from producers.loadgen.generator import EventKind

#: Upper bounds of the produce-latency histogram (produce() -> acknowledgement), seconds.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

SENT, ACKED, FAILED, START_NS, END_NS, LATENCY_SUM_US, DONE = range(7)
KIND_BASE = 7
BUCKET_BASE = KIND_BASE + len(EventKind)
ROW = BUCKET_BASE + len(LATENCY_BUCKETS_S) + 1  # + the +Inf bucket


class WorkerCounters:
    """One worker's counters, kept in plain Python ints and copied to its shared row."""

    def __init__(self) -> None:
        self.values = [0] * ROW

    def record_latency(self, latency_s: float) -> None:
        """Count one acknowledgement's produce latency in its histogram bucket."""
        values = self.values
        values[BUCKET_BASE + bisect.bisect_left(LATENCY_BUCKETS_S, latency_s)] += 1
        values[LATENCY_SUM_US] += int(latency_s * 1_000_000)

    def publish(self, shared: Any, worker: int) -> None:
        """Copy the counters into row ``worker`` of ``shared`` (a flat ``Array('q')``)."""
        shared[worker * ROW : (worker + 1) * ROW] = self.values


@dataclass(frozen=True)
class LoadTotals:
    """Totals over every worker row, with the run's timing."""

    sent: int
    acked: int
    failed: int
    by_kind: dict[EventKind, int]
    latency_buckets: tuple[int, ...]
    latency_sum_s: float
    elapsed_s: float
    workers_done: int

    @property
    def acked_per_s(self) -> float:
        """Acknowledged events per second from the first produce to the last acknowledgement."""
        return self.acked / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_quantile_s(self, quantile: float) -> float | None:
        """Upper bound of the latency bucket that holds ``quantile`` (None: no data yet)."""
        total = sum(self.latency_buckets)
        if total == 0:
            return None
        rank = quantile * total
        running = 0
        for bound, count in zip(
            (*LATENCY_BUCKETS_S, float("inf")), self.latency_buckets, strict=True
        ):
            running += count
            if running >= rank:
                return bound
        return float("inf")


def totals(rows: Sequence[int], workers: int, now_ns: int) -> LoadTotals:
    """Sum the shared rows; elapsed is from the earliest start to the latest end (or now)."""
    per_worker = [rows[i * ROW : (i + 1) * ROW] for i in range(workers)]
    started = [row[START_NS] for row in per_worker if row[START_NS]]
    ends = [row[END_NS] if row[DONE] else now_ns for row in per_worker if row[START_NS]]
    elapsed_s = (max(ends) - min(started)) / 1e9 if started else 0.0
    return LoadTotals(
        sent=sum(row[SENT] for row in per_worker),
        acked=sum(row[ACKED] for row in per_worker),
        failed=sum(row[FAILED] for row in per_worker),
        by_kind={kind: sum(row[KIND_BASE + kind] for row in per_worker) for kind in EventKind},
        latency_buckets=tuple(
            sum(row[BUCKET_BASE + b] for row in per_worker)
            for b in range(len(LATENCY_BUCKETS_S) + 1)
        ),
        latency_sum_s=sum(row[LATENCY_SUM_US] for row in per_worker) / 1e6,
        elapsed_s=max(elapsed_s, 0.0),
        workers_done=sum(1 for row in per_worker if row[DONE]),
    )


class LoadGenCollector(Collector):
    """Prometheus view of the shared counters: sent/acked/failed, latency histogram, rate."""

    def __init__(self, shared: Any, workers: int, topic: str, clock_ns: Any) -> None:
        self._shared = shared
        self._workers = workers
        self._topic = topic
        self._clock_ns = clock_ns

    def collect(self) -> Iterator[Metric]:
        """One consistent-enough snapshot of every worker's row (rows are copied per batch)."""
        snapshot = totals(self._shared[:], self._workers, self._clock_ns())
        labels = ["topic"]
        for name, doc, value in (
            ("events_sent", "Events handed to the Kafka producer.", snapshot.sent),
            ("events_acked", "Events Kafka acknowledged (acks=all).", snapshot.acked),
            ("events_failed", "Events whose delivery report carried an error.", snapshot.failed),
        ):
            counter = CounterMetricFamily(f"streamhouse_loadgen_{name}", doc, labels=labels)
            counter.add_metric([self._topic], value)
            yield counter
        kinds = CounterMetricFamily(
            "streamhouse_loadgen_events_generated",
            "Events generated, by kind (new_version, duplicate, out_of_order, late).",
            labels=["topic", "kind"],
        )
        for kind, count in snapshot.by_kind.items():
            kinds.add_metric([self._topic, kind.name.lower()], count)
        yield kinds
        cumulative, buckets = 0, []
        for bound, count in zip(
            (*LATENCY_BUCKETS_S, float("inf")), snapshot.latency_buckets, strict=True
        ):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        histogram = HistogramMetricFamily(
            "streamhouse_loadgen_produce_latency_seconds",
            "Time from produce() to the acknowledgement, seconds.",
            labels=labels,
        )
        histogram.add_metric([self._topic], buckets, snapshot.latency_sum_s)
        yield histogram
        rate = GaugeMetricFamily(
            "streamhouse_loadgen_achieved_rate",
            "Acknowledged events per second since the run started.",
            labels=labels,
        )
        rate.add_metric([self._topic], snapshot.acked_per_s)
        yield rate
