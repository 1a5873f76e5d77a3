"""The aggregates job: bronze -> event-time windows per network, by MERGE in update mode.

Two queries:

- ``aggregates_quake_windows_1m`` reads bronze as a Delta stream (exactly
  once, already decoded), leaves out the events the ingest job flagged late,
  drops duplicate deliveries of a version and keeps 1-minute tumbling windows
  with a watermark. In update mode each micro-batch carries only the windows
  that changed, which a MERGE writes into the window table, so a window is
  visible seconds after its events arrive and is corrected as more arrive.
- ``aggregates_quake_windows_1h`` rolls the 1-hour windows (sliding every 5
  minutes) up from the minute windows: it reads the minute table's change
  feed, recomputes every hour window holding a changed minute from the minute
  rows, and MERGEs them. One stateful query, not two: on a small machine the
  second dedup state and the 12-fold expansion of each event into sliding
  windows cost more than the rollup.

Lateness is a property of each record, decided once by the ingest job and
stored as ``is_late`` (event time older than its Kafka timestamp minus the
allowed lateness). Spark's own watermark here only bounds the state, and it
must never drop a record that rule accepted. Event times more than
``spark.max_event_time_ahead`` after their Kafka timestamp are quarantined, so
the newest event time is at most that far ahead of the newest Kafka time, and
the state watermark lags it by ``STATE_WATERMARK_FACTOR`` times the allowed
lateness plus that tolerance: an on-time record is dropped only if its Kafka
timestamp is more than twice the allowed lateness behind the newest one this
query has seen in an earlier batch (producers stamping records far out of
order). Should that ever happen it is counted
(``streamhouse_stream_rows_dropped_by_watermark_total``) and logged, and
``streamhouse replay bronze --live`` rebuilds the range.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pyspark.sql import functions as F  # noqa: N812

from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES, QUAKE_WINDOWS_1H, QUAKE_WINDOWS_1M, Table
from monitoring.stream_metrics import ROWS_WRITTEN, observe_latency_histogram
from spark_jobs import transforms
from spark_jobs.bronze_stream import ensure_bronze
from spark_jobs.delta_io import delta_stream, ensure_table, merge_upsert
from spark_jobs.session import start_query

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)

JOB = "aggregates"
STATE_WATERMARK_FACTOR = 3
MINUTE = "1 minute"
HOUR, HOUR_SLIDE = "1 hour", "5 minutes"
MINUTE_QUERY = f"aggregates_{QUAKE_WINDOWS_1M.name}"
HOUR_QUERY = f"aggregates_{QUAKE_WINDOWS_1H.name}"


def state_delay_s(allowed_lateness: str, max_ahead: str) -> int:
    """The delay of the window query's state watermark, in seconds (see the module doc)."""
    lateness_ms = transforms.duration_ms(allowed_lateness)
    return (lateness_ms * STATE_WATERMARK_FACTOR + transforms.duration_ms(max_ahead)) // 1000


def deduplicated_events(bronze_stream: DataFrame, settings: Settings) -> DataFrame:
    """On-time bronze rows with event time and watermark, one per (entity_id, updated_ms)."""
    delay_s = state_delay_s(settings.spark.watermark_delay, settings.spark.max_event_time_ahead)
    return (
        transforms.with_event_time(transforms.on_time(bronze_stream))
        .withWatermark("event_time", f"{delay_s} seconds")
        .dropDuplicatesWithinWatermark(["entity_id", "updated_ms"])
    )


def hour_windows_of(minute_rows: DataFrame, changed_minutes: DataFrame) -> DataFrame:
    """The hour windows holding any of ``changed_minutes``, rolled up from ``minute_rows``."""
    affected = transforms.windows_containing(changed_minutes, HOUR, HOUR_SLIDE).distinct()
    span = affected.agg(F.min("window_start"), F.max("window_end")).first()
    if span is None or span[0] is None:
        return affected.limit(0)
    needed = minute_rows.where(
        (F.col("window_start") >= F.lit(span[0])) & (F.col("window_end") <= F.lit(span[1]))
    )
    hourly = transforms.rollup_windows(needed, HOUR, HOUR_SLIDE)
    return hourly.join(affected, list(transforms.WINDOW_KEY), "left_semi")


class WindowMerger:
    """``foreachBatch`` of the minute query: MERGE the updated windows into the table."""

    def __init__(self, settings: Settings, table: Table) -> None:
        self._path = table.path(settings.lake_uri)
        self._table = table

    def __call__(self, windows: DataFrame, batch_id: int) -> None:
        """Upsert the windows this batch changed (the state holds their full values).

        A batch changes few windows (one row per network and open minute), so
        they are collected once and MERGEd from the driver: the stateful plan
        runs once, and the MERGE's source is a small local relation instead of
        a plan Delta would have to materialize first.
        """
        spark = windows.sparkSession
        started = time.monotonic()
        changed = windows.collect()
        if not changed:
            return
        planned = time.monotonic()
        source = spark.createDataFrame(changed, windows.schema)
        oldest = min(r.window_start for r in changed)
        merge_upsert(
            spark,
            source,
            self._table,
            self._path,
            transforms.WINDOW_KEY,
            target_filter=f"target.window_start >= {transforms.sql_timestamp(oldest)}",
        )
        committed_ms = time.time() * 1000
        log.info(
            "%s batch %d: %d windows; state %.2fs, merge %.2fs",
            self._table.name, batch_id, len(changed), planned - started, time.monotonic() - planned,
        )  # fmt: skip
        ROWS_WRITTEN.labels(JOB, self._table.name).inc(len(changed))
        observe_latency_histogram(
            self._table.name,
            [(int(r.last_produced_at_ms), 1) for r in changed if r.last_produced_at_ms is not None],
            committed_ms,
        )


class HourRollup:
    """``foreachBatch`` of the hour query: recompute and MERGE the hours of changed minutes.

    Each hour window is recomputed whole from the minute table, so a batch run
    twice (after a crash) writes the same values again: idempotent by content.
    """

    def __init__(self, settings: Settings) -> None:
        self._minute_path = QUAKE_WINDOWS_1M.path(settings.lake_uri)
        self._merger = WindowMerger(settings, QUAKE_WINDOWS_1H)

    def __call__(self, changes: DataFrame, batch_id: int) -> None:
        """Roll up the hour windows holding the minutes this batch of changes touched."""
        spark = changes.sparkSession
        changed = changes.where(F.col("_change_type").isin("insert", "update_postimage"))
        minutes = spark.read.format("delta").load(self._minute_path)
        self._merger(hour_windows_of(minutes, changed), batch_id)


def ensure_minute_windows(spark: SparkSession, settings: Settings) -> str:
    """Create the (empty) minute window table when missing, so the rollup can stream it."""
    bronze = spark.read.format("delta").load(ensure_bronze(spark, settings)).limit(0)
    empty = transforms.window_aggregates(transforms.with_event_time(bronze), MINUTE)
    path = QUAKE_WINDOWS_1M.path(settings.lake_uri)
    ensure_table(spark, QUAKE_WINDOWS_1M, path, empty)
    return path


def ensure_hour_windows(spark: SparkSession, settings: Settings) -> str:
    """Create the (empty) hour window table when missing.

    The rollup writes it only once a minute window closes, which may be hours
    away (or never, for a lake of late events): the table must exist, and be
    registered in the catalog, from the start.
    """
    minutes = spark.read.format("delta").load(ensure_minute_windows(spark, settings)).limit(0)
    path = QUAKE_WINDOWS_1H.path(settings.lake_uri)
    ensure_table(
        spark, QUAKE_WINDOWS_1H, path, transforms.rollup_windows(minutes, HOUR, HOUR_SLIDE)
    )
    return path


def start_minute_windows(
    spark: SparkSession, settings: Settings, available_now: bool = False
) -> StreamingQuery:
    """Start the 1-minute window query, reading bronze as a stream."""
    ensure_minute_windows(spark, settings)  # and bronze, which it is derived from
    events = deduplicated_events(
        delta_stream(spark, settings).load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri)),
        settings,
    )
    return start_query(
        transforms.window_aggregates(events, MINUTE)
        .writeStream.outputMode("update")
        .foreachBatch(WindowMerger(settings, QUAKE_WINDOWS_1M)),
        settings,
        MINUTE_QUERY,
        settings.checkpoint_dir(JOB, QUAKE_WINDOWS_1M.name),
        available_now,
    )


def start_hour_rollup(
    spark: SparkSession, settings: Settings, available_now: bool = False
) -> StreamingQuery:
    """Start the 1-hour rollup query, reading the minute table's change feed."""
    ensure_hour_windows(spark, settings)  # and the minute table it reads
    minute_path = QUAKE_WINDOWS_1M.path(settings.lake_uri)
    changes = delta_stream(spark, settings).option("readChangeFeed", "true").load(minute_path)
    return start_query(
        changes.writeStream.foreachBatch(HourRollup(settings)),
        settings,
        HOUR_QUERY,
        settings.checkpoint_dir(JOB, QUAKE_WINDOWS_1H.name),
        available_now,
    )
