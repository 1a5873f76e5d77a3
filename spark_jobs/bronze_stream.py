"""The ingest job: Kafka change events -> bronze, quarantine and late events.

Reads the change-event topic with Structured Streaming (read_committed, so
records of aborted producer transactions never appear) and, per micro-batch,
decodes the Confluent-framed Avro in the JVM (``transforms``), then:

- appends every decoded event to bronze and every undecodable record to
  quarantine, each append carrying ``txnAppId`` (job + sink) and
  ``txnVersion`` (the batch id), so a batch replayed after a crash between
  the Delta commit and the checkpoint commit is skipped, not written twice;
- flags each event that is already behind the watermark (the newest event
  time bronze held before the batch, minus ``spark.watermark_delay``) with
  ``is_late``, appends those to the late-events table and counts them. The
  windowed aggregation leaves flagged events out, and so does a replay: the
  decision is made once and stored with the row.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pyspark.sql import functions as F  # noqa: N812

from lake.tables import (
    BRONZE_QUAKE_CHANGES,
    LATE_QUAKE_CHANGES,
    QUARANTINE_QUAKE_CHANGES,
    Table,
)
from monitoring.stream_metrics import LATE_EVENTS, ROWS_WRITTEN, observe_latency_histogram
from spark_jobs import transforms
from spark_jobs.delta_io import append_once, ensure_table
from spark_jobs.schemas import WriterSchemas, reader_schema
from streamhouse.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)

JOB = "bronze"
QUERY_NAME = "bronze_quake_changes"


def kafka_reader_options(settings: Settings) -> dict[str, str]:
    """Options of the Kafka source: the client settings under ``kafka.``, topic and offsets."""
    options = {f"kafka.{k}": v for k, v in settings.kafka.client_config().items()}
    options.update(
        {
            "subscribe": settings.kafka.changes_topic,
            "startingOffsets": settings.spark.starting_offsets,
            # Records of aborted producer transactions (a poller killed mid-poll)
            # must never reach the lake.
            "kafka.isolation.level": "read_committed",
            "failOnDataLoss": "true",
        }
    )
    if settings.spark.max_offsets_per_trigger:
        options["maxOffsetsPerTrigger"] = str(settings.spark.max_offsets_per_trigger)
    return options


class ChangeBatchWriter:
    """The ``foreachBatch`` function of the ingest query; also used by the batch replay."""

    def __init__(self, settings: Settings, app_prefix: str = JOB) -> None:
        self._lake_root = settings.lake_uri
        self._schemas = WriterSchemas(settings.registry.url)
        self._reader_schema = reader_schema()
        self._app_prefix = app_prefix
        self._delay_ms = transforms.duration_ms(settings.spark.watermark_delay)
        # Newest event time in bronze; read from the table on the first batch
        # (a restart), then kept up to date from each batch.
        self._max_event_time_ms: int | None = None
        self._max_loaded = False

    def path(self, table: Table) -> str:
        """Where ``table`` lives in this writer's lake."""
        return table.path(self._lake_root)

    def classify(self, batch: DataFrame) -> DataFrame:
        """A batch of Kafka records decoded in one pass, with a ``reason`` where it failed."""
        framed = transforms.split_wire_format(batch)
        ids = [
            row.schema_id
            for row in framed.where(F.col("wire_ok")).select("schema_id").distinct().collect()
        ]
        return transforms.classify_changes(framed, self._schemas.resolve(ids), self._reader_schema)

    def decode(self, batch: DataFrame) -> tuple[DataFrame, DataFrame]:
        """(bronze rows, quarantine rows) of a batch of Kafka records."""
        return self._split(self.classify(batch))

    @staticmethod
    def _split(classified: DataFrame) -> tuple[DataFrame, DataFrame]:
        decoded, rejected = transforms.split_classified(classified)
        ingested_at = F.current_timestamp()
        return (
            transforms.to_bronze(decoded, ingested_at),
            transforms.to_quarantine(rejected, ingested_at),
        )

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """Decode one micro-batch and write it to every sink, each write idempotent.

        Few Spark jobs per batch, since on a small machine each job's overhead is
        the latency: the Kafka batch and the decoded rows are cached once, one
        aggregation gives the counts, the newest event time and the produced-at
        histogram (for the latency metric), and empty sinks are not written.
        """
        spark = batch.sparkSession
        timer = _StepTimer(batch_id)
        # Decoded once and cached: bronze and quarantine are two filters of it.
        classified = self.classify(batch.persist()).persist()
        bronze, quarantine = self._split(classified)
        bronze = transforms.flag_late(bronze, self._max_before(spark), self._delay_ms).persist()
        quarantine = quarantine.persist()
        try:
            stats = transforms.batch_stats(bronze)
            rejected = int(quarantine.count())
            timer.step("decode")
            if stats.rows:
                self._append(bronze, BRONZE_QUAKE_CHANGES, "bronze", batch_id, stats.rows)
                observe_latency_histogram("bronze", stats.produced_histogram, time.time() * 1000)
                timer.step("bronze")
            if rejected:
                self._append(quarantine, QUARANTINE_QUAKE_CHANGES, "quarantine", batch_id, rejected)
            if stats.late:
                late = bronze.where(F.col("is_late"))
                self._append(late, LATE_QUAKE_CHANGES, "late", batch_id, stats.late)
                LATE_EVENTS.inc(stats.late)
            if stats.max_event_time_ms is not None:
                self._max_event_time_ms = max(self._max_event_time_ms or 0, stats.max_event_time_ms)
            timer.done(stats.rows, rejected, stats.late)
        finally:
            quarantine.unpersist()
            bronze.unpersist()
            classified.unpersist()
            batch.unpersist()

    def _max_before(self, spark: SparkSession) -> int | None:
        if not self._max_loaded:
            bronze = spark.read.format("delta").load(self.path(BRONZE_QUAKE_CHANGES))
            newest = bronze.agg(F.max("event_time_ms")).first()
            self._max_event_time_ms = int(newest[0]) if newest and newest[0] is not None else None
            self._max_loaded = True
        return self._max_event_time_ms

    def _append(self, rows: DataFrame, table: Table, sink: str, batch_id: int, count: int) -> None:
        append_once(rows, table, self.path(table), f"{self._app_prefix}.{sink}", batch_id)
        ROWS_WRITTEN.labels(JOB, sink).inc(count)


class _StepTimer:
    """Seconds spent in each step of a batch, logged once per batch."""

    def __init__(self, batch_id: int) -> None:
        self._batch_id = batch_id
        self._last = time.monotonic()
        self._steps: list[str] = []

    def step(self, name: str) -> None:
        now = time.monotonic()
        self._steps.append(f"{name} {now - self._last:.2f}s")
        self._last = now

    def done(self, rows: int, rejected: int, late: int) -> None:
        if rows or rejected:
            log.info(
                "batch %d: %d rows, %d quarantined, %d late; %s",
                self._batch_id, rows, rejected, late, ", ".join(self._steps),
            )  # fmt: skip


def ensure_bronze(spark: SparkSession, settings: Settings) -> str:
    """Create the (empty) bronze table when missing, so streams can read it from the start."""
    path = BRONZE_QUAKE_CHANGES.path(settings.lake_uri)
    empty = spark.createDataFrame(
        [],
        "topic string, partition int, offset long, timestamp timestamp, key binary, value binary",
    )
    framed = transforms.split_wire_format(empty)
    decoded, _ = transforms.decode_changes(framed, {}, reader_schema())
    bronze = transforms.flag_late(transforms.to_bronze(decoded), None, 0)
    ensure_table(spark, BRONZE_QUAKE_CHANGES, path, bronze)
    return path


def start(spark: SparkSession, settings: Settings, available_now: bool = False) -> StreamingQuery:
    """Start the ingest query; ``available_now`` reads what is in Kafka, then stops."""
    ensure_bronze(spark, settings)
    stream = spark.readStream.format("kafka").options(**kafka_reader_options(settings)).load()
    writer = (
        stream.writeStream.queryName(QUERY_NAME)
        .foreachBatch(ChangeBatchWriter(settings))
        .option("checkpointLocation", settings.checkpoint_dir(JOB, "quake_changes"))
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=settings.spark.trigger_interval)
    return writer.start()
