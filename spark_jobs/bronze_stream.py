"""The ingest job: Kafka change events -> bronze and quarantine.

Reads the change-event topic with Structured Streaming (read_committed, so
records of aborted producer transactions never appear) and, per micro-batch,
decodes the Confluent-framed Avro in the JVM (``transforms``), then:

- appends every decoded event to bronze and every undecodable record to
  quarantine, each append carrying ``txnAppId`` (job + sink) and
  ``txnVersion`` (the batch id), so a batch replayed after a crash between
  the Delta commit and the checkpoint commit is skipped, not written twice;
- flags each event that is already behind the watermark (the newest event
  time bronze held before the batch, minus ``spark.watermark_delay``) with
  ``is_late`` and counts them (``late_stream`` copies them to the late-events
  table). The windowed aggregation leaves flagged events out, and so does a
  replay: the decision is made once and stored with the row.

The batch is one Spark job in the common case (see ``__call__``): on a small
machine each job's fixed cost, not the rows, is the latency.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pyspark.sql import Observation
from pyspark.sql import functions as F  # noqa: N812

from core.schemas import value_subject
from core.settings import Settings
from lake.tables import (
    BRONZE_QUAKE_CHANGES,
    QUARANTINE_QUAKE_CHANGES,
    Table,
)
from monitoring.stream_metrics import LATE_EVENTS, ROWS_WRITTEN, observe_latency_histogram
from spark_jobs import transforms
from spark_jobs.delta_io import append_once, ensure_table
from spark_jobs.schemas import WriterSchemas, reader_schema
from spark_jobs.session import INGEST_POOL, start_query

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
        self._subject = value_subject(settings.kafka.changes_topic)
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
        """A batch of Kafka records decoded in one pass, with a ``reason`` where it failed.

        The writer schemas are the versions of the topic's value subject
        (TopicNameStrategy); a record naming any other schema id is quarantined.
        """
        framed = transforms.split_wire_format(batch)
        writer_schemas = self._schemas.of_subject(self._subject)
        return transforms.classify_changes(framed, writer_schemas, self._reader_schema)

    @staticmethod
    def split(classified: DataFrame) -> tuple[DataFrame, DataFrame]:
        """(bronze rows, quarantine rows) of a classified batch."""
        decoded, rejected = transforms.split_classified(classified)
        ingested_at = F.current_timestamp()
        return (
            transforms.to_bronze(decoded, ingested_at),
            transforms.to_quarantine(rejected, ingested_at),
        )

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """Decode one micro-batch and write it to every sink, each write idempotent.

        On a small machine each Spark job's fixed cost is the latency, so the
        common batch is one job: the bronze append, with the batch's figures
        (records, rejected, late, newest event time, produced-at histogram)
        gathered by ``observe`` while it runs. Only a batch that holds
        undecodable records reads its Kafka range a second time, for quarantine.
        """
        timer = _StepTimer(batch_id)
        # Jobs started from this thread go to the ingest pool, ahead of the
        # derived queries' jobs (see session.INGEST_POOL).
        batch.sparkSession.sparkContext.setLocalProperty("spark.scheduler.pool", INGEST_POOL)
        classified = self.classify(batch)
        timer.step("schemas")
        checked = Observation()
        bronze, _ = self.split(classified.observe(checked, transforms.rejected_count()))
        bronze = transforms.flag_late(bronze, self._max_before(batch.sparkSession), self._delay_ms)
        written = Observation()
        bronze = bronze.observe(written, *transforms.batch_metrics())
        self._append(bronze, BRONZE_QUAKE_CHANGES, "bronze", batch_id)
        committed_ms = time.time() * 1000
        timer.step("bronze")
        stats = transforms.batch_stats(written.get)
        ROWS_WRITTEN.labels(JOB, "bronze").inc(stats.rows)
        observe_latency_histogram("bronze", stats.produced_histogram, committed_ms)
        LATE_EVENTS.inc(stats.late)
        rejected = int(checked.get["rejected"])
        if rejected:
            _, quarantine = self.split(classified)
            self._append(quarantine, QUARANTINE_QUAKE_CHANGES, "quarantine", batch_id)
            ROWS_WRITTEN.labels(JOB, "quarantine").inc(rejected)
            timer.step("quarantine")
        if stats.max_event_time_ms is not None:
            self._max_event_time_ms = max(self._max_event_time_ms or 0, stats.max_event_time_ms)
        timer.done(stats.rows, rejected, stats.late)

    def _max_before(self, spark: SparkSession) -> int | None:
        if not self._max_loaded:
            bronze = spark.read.format("delta").load(self.path(BRONZE_QUAKE_CHANGES))
            newest = bronze.agg(F.max("event_time_ms")).first()
            self._max_event_time_ms = int(newest[0]) if newest and newest[0] is not None else None
            self._max_loaded = True
        return self._max_event_time_ms

    def _append(self, rows: DataFrame, table: Table, sink: str, batch_id: int) -> None:
        append_once(rows, table, self.path(table), f"{self._app_prefix}.{sink}", batch_id)


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
    return start_query(
        stream.writeStream.foreachBatch(ChangeBatchWriter(settings)),
        settings,
        QUERY_NAME,
        settings.checkpoint_dir(JOB, "quake_changes"),
        available_now,
    )
