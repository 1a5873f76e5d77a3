"""The bronze job: Kafka change events -> Delta, exactly once.

Reads the change-event topic with Structured Streaming and, per micro-batch,
decodes the Confluent-framed Avro in the JVM (``transforms``) and appends the
events to the bronze table and the undecodable records to quarantine. Each
append carries ``txnAppId`` (job + sink) and ``txnVersion`` (the batch id),
so a batch replayed after a crash between the Delta commit and the checkpoint
commit is skipped by Delta instead of written twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F  # noqa: N812

from lake.tables import BRONZE_QUAKE_CHANGES, QUARANTINE_QUAKE_CHANGES, Table
from monitoring.stream_metrics import ROWS_WRITTEN
from spark_jobs import transforms
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
            # Keep going when retention dropped offsets, but say so in the log.
            "failOnDataLoss": "true",
        }
    )
    if settings.spark.max_offsets_per_trigger:
        options["maxOffsetsPerTrigger"] = str(settings.spark.max_offsets_per_trigger)
    return options


def _append(df: DataFrame, table: Table, lake_root: str, sink: str, batch_id: int) -> None:
    rows = df.persist()
    try:
        count = rows.count()
        if count == 0:
            return
        (
            rows.write.format("delta")
            .mode("append")
            .partitionBy(*table.partition_by)
            .option("txnAppId", f"{JOB}.{sink}")
            .option("txnVersion", batch_id)
            .save(table.path(lake_root))
        )
        ROWS_WRITTEN.labels(JOB, sink).inc(count)
    finally:
        rows.unpersist()


class BronzeBatchWriter:
    """The ``foreachBatch`` function of the bronze query."""

    def __init__(self, settings: Settings) -> None:
        self._lake_root = settings.lake_uri
        self._schemas = WriterSchemas(settings.registry.url)
        self._reader_schema = reader_schema()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """Decode one micro-batch and append it to bronze and quarantine."""
        framed = transforms.split_wire_format(batch).persist()
        try:
            ids = [
                row.schema_id
                for row in framed.where(F.col("wire_ok")).select("schema_id").distinct().collect()
            ]
            writer_schemas = self._schemas.resolve(ids)
            decoded, rejected = transforms.decode_changes(
                framed, writer_schemas, self._reader_schema
            )
            ingested_at = F.current_timestamp()
            _append(
                transforms.to_bronze(decoded, ingested_at),
                BRONZE_QUAKE_CHANGES,
                self._lake_root,
                "bronze",
                batch_id,
            )
            _append(
                transforms.to_quarantine(rejected, ingested_at),
                QUARANTINE_QUAKE_CHANGES,
                self._lake_root,
                "quarantine",
                batch_id,
            )
        finally:
            framed.unpersist()


def start(spark: SparkSession, settings: Settings, available_now: bool = False) -> StreamingQuery:
    """Start the bronze query; ``available_now`` reads what is in Kafka, then stops."""
    stream = spark.readStream.format("kafka").options(**kafka_reader_options(settings)).load()
    writer = (
        stream.writeStream.queryName(QUERY_NAME)
        .foreachBatch(BronzeBatchWriter(settings))
        .option("checkpointLocation", settings.checkpoint_dir(JOB, "quake_changes"))
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=settings.spark.trigger_interval)
    return writer.start()
