"""Prometheus metrics of Spark streaming queries, fed by a StreamingQueryListener."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from pyspark.sql.streaming import StreamingQueryListener

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
QUERY_TERMINATED = Counter(
    "streamhouse_stream_terminations_total", "Queries that terminated", ["query", "failed"]
)


class PrometheusListener(StreamingQueryListener):  # type: ignore[misc]
    """Copies each query's progress into Prometheus metrics."""

    def __init__(self) -> None:
        super().__init__()
        self._names: dict[str, str] = {}

    def _name(self, query_id: Any, name: str | None = None) -> str:
        if name:
            self._names[str(query_id)] = name
        return self._names.get(str(query_id), str(query_id))

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's name
        """Remember the query's name, the label of its metrics."""
        self._name(event.id, event.name)

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

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802 - Spark's name
        """Idle queries process nothing."""
        INPUT_ROWS_PER_S.labels(self._name(event.id)).set(0.0)

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802 - Spark's name
        """Count terminations, failed or not."""
        failed = str(event.exception is not None).lower()
        QUERY_TERMINATED.labels(self._name(event.id), failed).inc()


ROWS_WRITTEN = Counter(
    "streamhouse_stream_rows_written_total", "Rows committed to a Delta sink", ["job", "sink"]
)
