"""Prometheus metrics of Spark streaming queries, fed by a StreamingQueryListener."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from pyspark.sql.streaming import StreamingQueryListener

log = logging.getLogger(__name__)

INPUT_ROWS_PER_S = Gauge(
    "streamhouse_stream_input_rows_per_second", "Rows per second arriving at the query", ["query"]
)
PROCESSED_ROWS_PER_S = Gauge(
    "streamhouse_stream_processed_rows_per_second", "Rows per second the query processed", ["query"]
)
BATCH_DURATION_S = Histogram(
    "streamhouse_stream_batch_duration_seconds",
    "Wall time of one micro-batch",
    ["query"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
ROWS_TOTAL = Counter("streamhouse_stream_input_rows_total", "Rows read by the query", ["query"])
BATCHES_TOTAL = Counter("streamhouse_stream_batches_total", "Micro-batches completed", ["query"])
LAST_BATCH_ID = Gauge(
    "streamhouse_stream_last_batch_id", "Id of the last completed batch", ["query"]
)
KAFKA_LAG = Gauge(
    "streamhouse_stream_kafka_lag_offsets",
    "Offsets behind the latest, max over partitions (Kafka consumer lag)",
    ["query"],
)
QUERY_TERMINATED = Counter(
    "streamhouse_stream_terminations_total", "Queries that terminated", ["query", "failed"]
)
BATCHES_SKIPPED = Counter(
    "streamhouse_stream_batches_skipped_total",
    "Batches Delta skipped as already committed (re-run after a crash between the Delta commit "
    "and the checkpoint's commit)",
    ["query", "sink"],
)
# Liveness: a query reports after every batch, and every few seconds while idle
# (spark.sql.streaming.noDataProgressEventInterval). A query stuck inside a batch
# reports nothing, so the age of its last report tells a stalled query from an
# idle one: stalled when older than the threshold (its trigger interval plus
# spark.stall_after_s).
LAST_REPORT_TIMESTAMP_S = Gauge(
    "streamhouse_stream_query_last_progress_timestamp_seconds",
    "Unix time of the query's last progress or idle report",
    ["query"],
)
STALL_THRESHOLD_S = Gauge(
    "streamhouse_stream_query_stall_threshold_seconds",
    "A query silent for longer than this is stalled",
    ["query"],
)
ROWS_DROPPED_BY_WATERMARK = Counter(
    "streamhouse_stream_rows_dropped_by_watermark_total",
    "On-time rows a stateful query's own watermark dropped (should stay 0: the state watermark "
    "is wider than the lateness rule; replay the range with `streamhouse replay bronze --live`)",
    ["query"],
)


def _iso_to_ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


class PrometheusListener(StreamingQueryListener):  # type: ignore[misc]
    """Copies each query's progress into Prometheus metrics."""

    def __init__(self) -> None:
        super().__init__()
        self._names: dict[str, str] = {}
        self._last_report_s: dict[str, float] = {}

    def last_report_s(self, name: str) -> float | None:
        """Unix time of the last report of the query ``name`` (None before its first)."""
        return self._last_report_s.get(name)

    def _alive(self, name: str) -> None:
        now = time.time()
        self._last_report_s[name] = now
        LAST_REPORT_TIMESTAMP_S.labels(name).set(now)

    def _name(self, query_id: Any, name: str | None = None) -> str:
        if name:
            self._names[str(query_id)] = name
        return self._names.get(str(query_id), str(query_id))

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's name
        """Remember the query's name, the label of its metrics; it is alive."""
        self._alive(self._name(event.id, event.name))

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802 - Spark's name
        """Record rows, rates and duration of the batch that just finished."""
        progress = event.progress
        name = self._name(progress.id, progress.name)
        INPUT_ROWS_PER_S.labels(name).set(progress.inputRowsPerSecond or 0.0)
        PROCESSED_ROWS_PER_S.labels(name).set(progress.processedRowsPerSecond or 0.0)
        duration_ms = (progress.durationMs or {}).get("triggerExecution", 0)
        BATCH_DURATION_S.labels(name).observe(duration_ms / 1000.0)
        ROWS_TOTAL.labels(name).inc(progress.numInputRows or 0)
        BATCHES_TOTAL.labels(name).inc()
        LAST_BATCH_ID.labels(name).set(progress.batchId)
        watermark = (progress.eventTime or {}).get("watermark")
        if watermark:
            watermark_ms = _iso_to_ms(watermark)
            WATERMARK_DELAY_S.labels(name).set(max(0.0, time.time() - watermark_ms / 1000.0))
        state_rows = sum(op.numRowsTotal for op in progress.stateOperators or [])
        STATE_ROWS.labels(name).set(state_rows)
        dropped = sum(op.numRowsDroppedByWatermark for op in progress.stateOperators or [])
        if dropped:
            ROWS_DROPPED_BY_WATERMARK.labels(name).inc(dropped)
            log.error(
                "%s: its state watermark dropped %d rows in batch %d; replay their range with "
                "`streamhouse replay bronze --live`",
                name,
                dropped,
                progress.batchId,
            )
        self._alive(name)
        for source in progress.sources or []:
            metrics = source.metrics or {}
            if "maxOffsetsBehindLatest" in metrics:
                KAFKA_LAG.labels(name).set(float(metrics["maxOffsetsBehindLatest"] or 0))

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802 - Spark's name
        """Idle queries process nothing, and are alive."""
        name = self._name(event.id)
        INPUT_ROWS_PER_S.labels(name).set(0.0)
        self._alive(name)

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802 - Spark's name
        """Count terminations, failed or not."""
        failed = str(event.exception is not None).lower()
        QUERY_TERMINATED.labels(self._name(event.id), failed).inc()


ROWS_WRITTEN = Counter(
    "streamhouse_stream_rows_written_total", "Rows committed to a Delta sink", ["job", "sink"]
)

LATE_EVENTS = Counter(
    "streamhouse_stream_late_events_total",
    "Change events behind the watermark on arrival: left out of the windows, kept in the "
    "late-events table",
)
WATERMARK_DELAY_S = Gauge(
    "streamhouse_stream_watermark_delay_seconds",
    "Wall clock minus the query's event-time watermark",
    ["query"],
)
STATE_ROWS = Gauge(
    "streamhouse_stream_state_rows", "Rows held in the query's state store", ["query"]
)

# End-to-end latency: produced_at_ms (stamped by the producer) to the Delta
# commit that made the row visible. Observed in bulk, from a produced-at
# histogram the writer gathers while it writes (or from the few window rows a
# batch changed), so the buckets are exposed by a collector of our own.
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


class BulkHistogram:
    """A Prometheus histogram fed with pre-bucketed counts (cumulative, per label)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.buckets = buckets
        self._lock = threading.Lock()
        self._series: dict[str, tuple[list[int], float]] = {}
        REGISTRY.register(self)

    def add(self, label: str, cumulative_counts: list[int], total: int, sum_s: float) -> None:
        """Add one batch: counts at or below each bucket bound, the count and the sum."""
        with self._lock:
            counts, old_sum = self._series.get(label, ([0] * (len(self.buckets) + 1), 0.0))
            for i, value in enumerate([*cumulative_counts, total]):
                counts[i] += value
            self._series[label] = (counts, old_sum + sum_s)

    def declare(self, label: str) -> None:
        """Expose ``label``'s series at zero before its first observation.

        A counter that appears with its first value has no earlier sample to
        rate against, so a sink that commits rarely (silver, every 2 minutes)
        would show no latency until its second commit.
        """
        with self._lock:
            self._series.setdefault(label, ([0] * (len(self.buckets) + 1), 0.0))

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The histogram, as Prometheus reads it."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=["sink"])
        with self._lock:
            for label, (counts, sum_s) in self._series.items():
                bounds = [str(b) for b in self.buckets] + ["+Inf"]
                family.add_metric([label], list(zip(bounds, counts, strict=True)), sum_s)
        yield family

    def describe(self) -> list[HistogramMetricFamily]:
        """No samples at registration time."""
        return []


END_TO_END_LATENCY = BulkHistogram(
    "streamhouse_end_to_end_latency_seconds",
    "Produced-at to committed-in-Delta, per sink",
    LATENCY_BUCKETS_S,
)


def observe_latency_histogram(
    sink: str, produced: list[tuple[int, int]], committed_ms: float
) -> None:
    """Record latencies from a (produced_at_ms, rows) histogram and the commit time."""
    if not produced:
        return
    counts = [0] * len(LATENCY_BUCKETS_S)
    total = 0
    sum_s = 0.0
    for produced_ms, rows in produced:
        latency_s = max(0.0, (committed_ms - produced_ms) / 1000.0)
        total += rows
        sum_s += latency_s * rows
        for index, bound in enumerate(LATENCY_BUCKETS_S):
            if latency_s <= bound:
                counts[index] += rows
    END_TO_END_LATENCY.add(sink, counts, total, sum_s)
