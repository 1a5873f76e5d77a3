"""The ingest job: Kafka change events -> bronze, quarantine, silver and late events.

Reads the change-event topic with Structured Streaming (read_committed, so
records of aborted producer transactions never appear) and, per micro-batch,
decodes the Confluent-framed Avro in the JVM (``transforms``), then:

- appends every decoded event to bronze and every undecodable record to
  quarantine, each append carrying ``txnAppId`` (job + sink) and
  ``txnVersion`` (the batch id), so a batch replayed after a crash between
  the Delta commit and the checkpoint commit is skipped, not written twice;
- MERGEs the newest version per entity into silver (a repeated batch is a
  no-op by the MERGE condition);
- flags each event that is already behind the watermark (the newest event
  time bronze held before the batch, minus ``spark.watermark_delay``) with
  ``is_late``, appends those to the late-events table and counts them. The
  windowed aggregation leaves flagged events out, and so does a replay: the
  decision is made once and stored with the row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F  # noqa: N812

from lake.tables import (
    BRONZE_QUAKE_CHANGES,
    LATE_QUAKE_CHANGES,
    QUARANTINE_QUAKE_CHANGES,
    SILVER_QUAKES,
    Table,
)
from monitoring.stream_metrics import LATE_EVENTS, ROWS_WRITTEN, observe_commit_latency
from spark_jobs import transforms
from spark_jobs.delta_io import append_once, ensure_table, merge_upsert
from spark_jobs.schemas import WriterSchemas, reader_schema
from streamhouse.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

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

    def decode(self, batch: DataFrame) -> tuple[DataFrame, DataFrame]:
        """(bronze rows, quarantine rows) of a batch of Kafka records."""
        framed = transforms.split_wire_format(batch)
        ids = [
            row.schema_id
            for row in framed.where(F.col("wire_ok")).select("schema_id").distinct().collect()
        ]
        decoded, rejected = transforms.decode_changes(
            framed, self._schemas.resolve(ids), self._reader_schema
        )
        ingested_at = F.current_timestamp()
        return (
            transforms.to_bronze(decoded, ingested_at),
            transforms.to_quarantine(rejected, ingested_at),
        )

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """Decode one micro-batch and write it to every sink, each write idempotent."""
        spark = batch.sparkSession
        bronze, quarantine = self.decode(batch.persist())
        bronze = transforms.flag_late(bronze, self._max_before(spark), self._delay_ms).persist()
        try:
            self._append(bronze, BRONZE_QUAKE_CHANGES, "bronze", batch_id)
            self._append(quarantine, QUARANTINE_QUAKE_CHANGES, "quarantine", batch_id)
            silver = transforms.latest_per_entity(bronze)
            merge_upsert(
                spark,
                silver,
                SILVER_QUAKES,
                self.path(SILVER_QUAKES),
                ("entity_id",),
                update_condition=transforms.SILVER_UPDATE_CONDITION,
            )
            late = bronze.where(F.col("is_late"))
            LATE_EVENTS.inc(self._append(late, LATE_QUAKE_CHANGES, "late", batch_id))
            newest = bronze.agg(F.max("event_time_ms")).first()
            if newest is not None and newest[0] is not None:
                self._max_event_time_ms = max(self._max_event_time_ms or 0, int(newest[0]))
        finally:
            bronze.unpersist()
            batch.unpersist()

    def _max_before(self, spark: SparkSession) -> int | None:
        if not self._max_loaded:
            bronze = spark.read.format("delta").load(self.path(BRONZE_QUAKE_CHANGES))
            newest = bronze.agg(F.max("event_time_ms")).first()
            self._max_event_time_ms = int(newest[0]) if newest and newest[0] is not None else None
            self._max_loaded = True
        return self._max_event_time_ms

    def _append(self, rows: DataFrame, table: Table, sink: str, batch_id: int) -> int:
        rows = rows.persist()
        try:
            count = int(rows.count())
            if count:
                append_once(rows, table, self.path(table), f"{self._app_prefix}.{sink}", batch_id)
                ROWS_WRITTEN.labels(JOB, sink).inc(count)
                if sink == "bronze":
                    observe_commit_latency(rows, sink)
            return count
        finally:
            rows.unpersist()


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
