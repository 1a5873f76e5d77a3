"""The aggregates job: bronze -> event-time windows per network, by MERGE in update mode.

Reads bronze as a Delta stream (exactly-once, already decoded), leaves out
the events the ingest job flagged late, drops duplicate deliveries of a
version, and keeps two windowed aggregations with a watermark: 1-minute
tumbling and 1-hour sliding every 5 minutes. In update mode each micro-batch
carries only the windows that changed, which a MERGE writes into the window
table, so a window is visible seconds after its events arrive and is
corrected as more arrive.

Lateness is the ingest job's decision (stored as ``is_late``). Spark's own
watermark here only bounds the state: it is set ``STATE_WATERMARK_FACTOR``
times wider, so that it never drops an event the ingest job accepted even
when this query runs behind after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lake.tables import QUAKE_WINDOWS_1H, QUAKE_WINDOWS_1M, Table
from monitoring.stream_metrics import ROWS_WRITTEN, observe_commit_latency
from spark_jobs import transforms
from spark_jobs.bronze_stream import ensure_bronze
from spark_jobs.delta_io import merge_upsert
from streamhouse.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

JOB = "aggregates"
STATE_WATERMARK_FACTOR = 3


@dataclass(frozen=True)
class WindowSpec:
    """One windowed aggregation: its table, window length and slide."""

    table: Table
    duration: str
    slide: str | None

    @property
    def query_name(self) -> str:
        return f"aggregates_{self.table.name}"


WINDOWS = (
    WindowSpec(QUAKE_WINDOWS_1M, "1 minute", None),
    WindowSpec(QUAKE_WINDOWS_1H, "1 hour", "5 minutes"),
)


def deduplicated_events(bronze_stream: DataFrame, watermark_delay: str) -> DataFrame:
    """On-time bronze rows with event time and watermark, one per (entity_id, updated_ms)."""
    state_delay_s = transforms.duration_ms(watermark_delay) * STATE_WATERMARK_FACTOR // 1000
    return (
        transforms.with_event_time(transforms.on_time(bronze_stream))
        .withWatermark("event_time", f"{state_delay_s} seconds")
        .dropDuplicatesWithinWatermark(["entity_id", "updated_ms"])
    )


class WindowMerger:
    """``foreachBatch`` of a window query: MERGE the updated windows into the table."""

    def __init__(self, settings: Settings, spec: WindowSpec) -> None:
        self._path = spec.table.path(settings.lake_uri)
        self._spec = spec

    def __call__(self, windows: DataFrame, batch_id: int) -> None:
        """Upsert the windows this batch changed (the state holds their full values)."""
        windows = windows.persist()
        try:
            count = int(windows.count())
            if count == 0:
                return
            merge_upsert(
                windows.sparkSession, windows, self._spec.table, self._path, transforms.WINDOW_KEY
            )
            ROWS_WRITTEN.labels(JOB, self._spec.table.name).inc(count)
            observe_commit_latency(windows, self._spec.table.name, "last_produced_at_ms")
        finally:
            windows.unpersist()


def start_window(
    spark: SparkSession, settings: Settings, spec: WindowSpec, available_now: bool = False
) -> StreamingQuery:
    """Start the query of one window spec, reading bronze as a stream."""
    bronze_path = ensure_bronze(spark, settings)
    events = deduplicated_events(
        spark.readStream.format("delta").load(bronze_path), settings.spark.watermark_delay
    )
    windows = transforms.window_aggregates(events, spec.duration, spec.slide)
    writer = (
        windows.writeStream.queryName(spec.query_name)
        .outputMode("update")
        .foreachBatch(WindowMerger(settings, spec))
        .option("checkpointLocation", settings.checkpoint_dir(JOB, spec.table.name))
    )
    if available_now:
        return writer.trigger(availableNow=True).start()
    return writer.trigger(processingTime=settings.spark.trigger_interval).start()


def start(
    spark: SparkSession, settings: Settings, available_now: bool = False
) -> list[StreamingQuery]:
    """Start one query per window spec."""
    return [start_window(spark, settings, spec, available_now) for spec in WINDOWS]
