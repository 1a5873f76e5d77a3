"""The ingest job: Kafka change events -> bronze and quarantine.

Reads the change-event topic with Structured Streaming (read_committed, so
records of aborted producer transactions never appear) and, per micro-batch,
decodes the Confluent-framed Avro in the JVM (``transforms``), then:

- appends every decoded event to bronze and every record that can never
  decode (or whose event time is implausible) to quarantine, each Kafka
  position once (``ChangeBatchWriter``): a batch that follows the one the
  writer has just written is appended as it is; the first batch after a
  start, the only one a crash can have left committed in Delta but not in the
  checkpoint, writes only the positions the tables do not hold. A query
  without a checkpoint starts right after the Kafka offsets bronze and
  quarantine already hold (the table's own coordinates are the truth);
- flags each event ``is_late`` by the record-level rule (``transforms.flag_late``):
  the windows leave those out, and ``late_stream`` copies them to the
  late-events table;
- never waits without a deadline: the registry is retried for a bounded time
  (then the batch fails and is retried from the checkpoint), and the batch's
  figures are awaited with a timeout.

The batch is one Spark job in the common case (see ``__call__``): on a small
machine each job's fixed cost, not the rows, is the latency.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import Observation
from pyspark.sql import functions as F  # noqa: N812

from core.kafka_topics import partitions
from core.schemas import value_subject
from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES, QUARANTINE_QUAKE_CHANGES, Table
from monitoring.stream_metrics import (
    BATCHES_SKIPPED,
    LATE_EVENTS,
    ROWS_WRITTEN,
    observe_latency_histogram,
)
from spark_jobs import checkpoints, transforms
from spark_jobs.delta_io import (
    append,
    append_once,
    ensure_table,
    holds_from,
    not_held,
    observed,
    table_exists,
    write_if_any,
)
from spark_jobs.schemas import WriterSchemas, reader_schema
from spark_jobs.session import INGEST_POOL, start_query

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)

JOB = "bronze"
QUERY_NAME = "bronze_quake_changes"
CHECKPOINT_SINK = "quake_changes"


def kafka_reader_options(
    settings: Settings, starting_offsets: dict[int, int] | None = None
) -> dict[str, str]:
    """Options of the Kafka source: the Java client's settings under ``kafka.``, topic, offsets.

    ``starting_offsets`` (``{partition: offset}``) overrides ``spark.starting_offsets``
    for a query that has no checkpoint yet.
    """
    topic = settings.kafka.changes_topic
    options = {f"kafka.{k}": v for k, v in settings.kafka.java_client_config().items()}
    options.update(
        {
            "subscribe": topic,
            "startingOffsets": settings.spark.starting_offsets,
            # Records of aborted producer transactions (a poller killed mid-poll)
            # must never reach the lake.
            "kafka.isolation.level": "read_committed",
            "failOnDataLoss": "true",
        }
    )
    if starting_offsets is not None:
        options["startingOffsets"] = json.dumps(
            {topic: {str(p): o for p, o in sorted(starting_offsets.items())}}
        )
    if settings.spark.max_offsets_per_trigger:
        options["maxOffsetsPerTrigger"] = str(settings.spark.max_offsets_per_trigger)
    return options


class ChangeDecoder:
    """Kafka records -> classified rows -> bronze rows and quarantine rows.

    Shared by the live ingest and the replay from Kafka, so both decode,
    judge lateness and quarantine by the same rules. ``schemas``: the writer
    schemas' source (default: the settings' registry; tests pass one whose
    readiness check they turn off at a chosen call).
    """

    def __init__(self, settings: Settings, schemas: WriterSchemas | None = None) -> None:
        self._schemas = schemas or WriterSchemas(settings.registry, settings.spark.registry_retry_s)
        self._subject = value_subject(settings.kafka.changes_topic)
        self._reader_schema = reader_schema()
        self._lateness_ms = transforms.duration_ms(settings.spark.watermark_delay)
        self._ahead_ms = transforms.duration_ms(settings.spark.max_event_time_ahead)

    def classify(self, batch: DataFrame) -> DataFrame:
        """A batch of Kafka records decoded in one pass, with a ``reason`` where it failed.

        The writer schemas are the versions of the topic's value subject
        (TopicNameStrategy), read from the registry (retried while it is
        unreachable: an outage fails the batch, it never quarantines records).
        """
        framed = transforms.split_wire_format(batch)
        writer_schemas = self._schemas.of_subject(self._subject)
        return transforms.classify_changes(
            framed, writer_schemas, self._reader_schema, self._ahead_ms
        )

    def bronze_rows(self, classified: DataFrame, ingested_at: Column | None = None) -> DataFrame:
        """The decoded rows of a classified batch as bronze rows, ``is_late`` included."""
        decoded, _ = transforms.split_classified(classified)
        return transforms.flag_late(transforms.to_bronze(decoded, ingested_at), self._lateness_ms)

    def quarantine_rows(self, classified: DataFrame) -> DataFrame:
        """The rejected rows of a classified batch as quarantine rows.

        A record whose schema id is not a version of the topic's subject is
        quarantined only once the registry said why (no such id, or another
        subject's); when it cannot answer, this raises and the batch is retried.
        """
        _, rejected = transforms.split_classified(classified)
        foreign = [
            int(row.schema_id)
            for row in rejected.where(F.col("reason").startswith(transforms.NOT_OF_SUBJECT))
            .select("schema_id")
            .distinct()
            .collect()
        ]
        if foreign:
            reasons = self._schemas.why_unknown(self._subject, foreign)
            explained = F.col("reason")
            for schema_id, reason in reasons.items():
                explained = F.when(
                    F.col("reason").startswith(transforms.NOT_OF_SUBJECT)
                    & (F.col("schema_id") == schema_id),
                    F.lit(reason),
                ).otherwise(explained)
            rejected = rejected.withColumn("reason", explained)
        return transforms.to_quarantine(rejected)


class ChangeBatchWriter:
    """The ``foreachBatch`` function of the ingest query (``decoder``: default, the settings').

    A batch is written once whatever crash comes between its Delta commits and
    the checkpoint's commit (``spark.ingest_idempotency``):

    - ``positions`` (the default): Structured Streaming starts batch N+1 only
      after batch N's function returned and its commit file was written, so
      the one batch a crash can leave committed in Delta but not in the
      checkpoint is the first one a query runs after a (re)start. A batch that
      follows the batch this writer has just committed is appended as it is; any
      other (the first after a start, or a batch id seen before) writes only the
      Kafka positions each table does not hold yet. Delta commits a batch's
      rows to a table whole or not at all, so a re-run writes all or nothing.
    - ``transaction``: every append carries ``txnAppId`` (the job, the
      checkpoint's query id, the sink) and ``txnVersion`` (the batch id), and
      Delta skips a pair it has committed. Delta 4.4 rebuilds the table's
      state on every such append to look the pair up.
    """

    def __init__(
        self, settings: Settings, checkpoint: str, decoder: ChangeDecoder | None = None
    ) -> None:
        self._lake_root = settings.lake_uri
        self._checkpoint = checkpoint
        self._decoder = decoder or ChangeDecoder(settings)
        self._observe_timeout_s = settings.spark.observe_timeout_s
        self._by_transaction = settings.spark.ingest_idempotency == "transaction"
        self._topic = settings.kafka.changes_topic
        self._app_id: str | None = None
        #: The batch this writer last wrote to every sink, None when unknown (none yet,
        #: or the last call failed part way).
        self._last_written: int | None = None

    def path(self, table: Table) -> str:
        """Where ``table`` lives in this writer's lake."""
        return table.path(self._lake_root)

    def app_id(self, spark: SparkSession) -> str:
        """``txnAppId`` prefix: the job and the checkpoint's query id (read once).

        Tied to the checkpoint, so a new checkpoint's batch 0 is a new
        transaction, while a batch re-run from the same checkpoint is the same one.
        """
        if self._app_id is None:
            query = checkpoints.query_id(spark, self._checkpoint)
            if query is None:
                raise RuntimeError(f"the checkpoint {self._checkpoint} has no query id yet")
            self._app_id = f"{JOB}.{query}"
        return self._app_id

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """Decode one micro-batch and write it to every sink, each write idempotent.

        On a small machine each Spark job's fixed cost is the latency, so the
        common batch is one job: the bronze append, with the batch's figures
        (records, rejected, late, produced-at histogram) gathered by
        ``observe`` while it runs. Only a batch that holds records for
        quarantine reads its Kafka range a second time. A batch already
        committed before a crash writes nothing: it is counted, logged and
        left, and nothing waits for figures it will never produce.
        """
        timer = _StepTimer(batch_id)
        spark = batch.sparkSession
        # Jobs started from this thread go to the ingest pool, ahead of the
        # derived queries' jobs (see session.INGEST_POOL).
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", INGEST_POOL)
        follows = self._last_written is not None and batch_id == self._last_written + 1
        self._last_written = None  # until every sink has this batch
        classified = self._decoder.classify(batch)
        timer.step("schemas")
        if self._by_transaction or follows:
            stats, rejected = self._write_new(classified, batch_id, timer)
        else:
            stats, rejected = self._write_first(classified, batch_id, timer)
        self._last_written = batch_id
        timer.done(stats.rows, rejected, stats.late)

    def _write_new(
        self, classified: DataFrame, batch_id: int, timer: _StepTimer
    ) -> tuple[transforms.BatchStats, int]:
        """One job for bronze, with the figures observed; quarantine only when it has rows."""
        checked, written = Observation(), Observation()
        bronze = self._decoder.bronze_rows(classified.observe(checked, transforms.rejected_count()))
        bronze = bronze.observe(written, *transforms.batch_metrics())
        path = self.path(BRONZE_QUAKE_CHANGES)
        if self._by_transaction:
            app = f"{self.app_id(bronze.sparkSession)}.bronze"
            committed = append_once(bronze, BRONZE_QUAKE_CHANGES, path, app, batch_id)
        else:
            append(bronze, BRONZE_QUAKE_CHANGES, path)
            committed = True
        committed_ms = time.time() * 1000
        timer.step("bronze")
        if not committed:
            self._skipped(batch_id)
            # Delta's skip says nothing of the batch's rejected records: they are looked for.
            return _NO_ROWS, self._quarantine(classified, batch_id, timer, False)
        what = f"batch {batch_id} of {QUERY_NAME}"
        stats = self._committed(observed(written, self._observe_timeout_s, what), committed_ms)
        rejected = int(observed(checked, self._observe_timeout_s, what)["rejected"])
        if rejected:
            rejected = self._quarantine(classified, batch_id, timer, False)
        return stats, rejected

    def _write_first(
        self, classified: DataFrame, batch_id: int, timer: _StepTimer
    ) -> tuple[transforms.BatchStats, int]:
        """A batch that does not follow one this writer wrote: it may have run before a crash.

        Where it starts is in the checkpoint (``_batch_start``): when neither
        table holds a record from there on, none of the batch is written and it
        is appended as it is. Otherwise, or when the checkpoint does not say,
        only the positions each table does not hold are written.
        """
        spark = classified.sparkSession
        start, since = self._batch_start(spark, batch_id)
        held = (start is None and batch_id > 0) or any(
            holds_from(spark, self.path(table), self._topic, start, since)
            for table in (BRONZE_QUAKE_CHANGES, QUARANTINE_QUAKE_CHANGES)
        )
        timer.step("check")
        if not held:
            log.info(
                "batch %d is the first since a start; bronze and quarantine hold none of its "
                "records: appended as it is",
                batch_id,
            )
            return self._write_new(classified, batch_id, timer)
        log.info(
            "batch %d does not follow a batch this writer wrote: writing only the Kafka "
            "positions bronze and quarantine do not hold yet",
            batch_id,
        )
        return self._write_missing(classified, batch_id, since, timer)

    def _batch_start(
        self, spark: SparkSession, batch_id: int
    ) -> tuple[dict[int, int] | None, Column | None]:
        """Where the batch starts in Kafka and a bound on when a first run of it wrote rows.

        Batch N starts where batch N-1 planned to end, and a first run of it
        ran after ``commits/N-1``. Batch 0 starts at the Kafka source's initial
        offsets, which a new checkpoint takes right after the positions the
        lake holds (``resume_offsets``), and a first run of it ran after the
        checkpoint was created. So after a checkpoint reset, batch 0 looks
        only at the partitions ingested since, not at the whole table.
        """
        if batch_id == 0:
            start = checkpoints.initial_kafka_offsets(spark, self._checkpoint, self._topic)
            return start, _written_since(checkpoints.created_at_ms(spark, self._checkpoint))
        start = checkpoints.planned_kafka_offsets(
            spark, self._checkpoint, self._topic, batch_id - 1
        )
        since = checkpoints.committed_at_ms(spark, self._checkpoint, batch_id - 1)
        return start, _written_since(since)

    def _write_missing(
        self, classified: DataFrame, batch_id: int, since: Column | None, timer: _StepTimer
    ) -> tuple[transforms.BatchStats, int]:
        """Bronze's and quarantine's rows whose Kafka position each table does not hold yet."""
        spark = classified.sparkSession
        checked, written = Observation(), Observation()
        path = self.path(BRONZE_QUAKE_CHANGES)
        rows = self._decoder.bronze_rows(classified.observe(checked, transforms.rejected_count()))
        missing = not_held(spark, rows, path, transforms.KAFKA_POSITION, since)
        count = write_if_any(
            missing.observe(written, *transforms.batch_metrics()),
            lambda rows: append(rows, BRONZE_QUAKE_CHANGES, path),
        )
        committed_ms = time.time() * 1000
        timer.step("bronze")
        what = f"batch {batch_id} of {QUERY_NAME}"
        stats = _NO_ROWS
        if count:
            stats = self._committed(observed(written, self._observe_timeout_s, what), committed_ms)
        else:
            self._skipped(batch_id)
        # Every row of the batch went through the jobs above, written or not.
        rejected = int(observed(checked, self._observe_timeout_s, what)["rejected"])
        if rejected:
            rejected = self._quarantine(classified, batch_id, timer, True, since)
        return stats, rejected

    def _committed(self, figures: dict[str, Any], committed_ms: float) -> transforms.BatchStats:
        """The figures of rows just committed to bronze, counted in the metrics."""
        stats = transforms.batch_stats(figures)
        ROWS_WRITTEN.labels(JOB, "bronze").inc(stats.rows)
        observe_latency_histogram("bronze", stats.produced_histogram, committed_ms)
        LATE_EVENTS.inc(stats.late)
        return stats

    @staticmethod
    def _skipped(batch_id: int) -> None:
        BATCHES_SKIPPED.labels(QUERY_NAME, "bronze").inc()
        log.warning(
            "batch %d was already committed to bronze (the job stopped between the Delta "
            "commit and the checkpoint's): skipped, not written twice",
            batch_id,
        )

    def _quarantine(
        self,
        classified: DataFrame,
        batch_id: int,
        timer: _StepTimer,
        by_position: bool,
        since: Column | None = None,
    ) -> int:
        """Quarantine the batch's rejected records; ``by_position``: only those whose Kafka
        position the table does not hold (``since``: as ``delta_io.not_held``)."""
        path = self.path(QUARANTINE_QUAKE_CHANGES)
        rejected = self._decoder.quarantine_rows(classified)
        if by_position:
            spark = rejected.sparkSession
            rejected = not_held(spark, rejected, path, transforms.KAFKA_POSITION, since)

        def write(rows: DataFrame) -> None:
            if self._by_transaction:
                app = f"{self.app_id(rows.sparkSession)}.quarantine"
                if not append_once(rows, QUARANTINE_QUAKE_CHANGES, path, app, batch_id):
                    BATCHES_SKIPPED.labels(QUERY_NAME, "quarantine").inc()
                    return
            else:
                append(rows, QUARANTINE_QUAKE_CHANGES, path)
            ROWS_WRITTEN.labels(JOB, "quarantine").inc(rows.count())

        count = write_if_any(rejected, write)
        timer.step("quarantine")
        return count


_NO_ROWS = transforms.BatchStats(0, 0, [])


def _written_since(committed_ms: int | None) -> Column | None:
    """A condition every row of a re-run batch's first run meets: ingested on or after the
    day before ``committed_ms`` (a day of margin for clocks). None when unknown."""
    if committed_ms is None:
        return None
    day = datetime.fromtimestamp(committed_ms / 1000 - 86_400, tz=UTC).date()
    return F.col("ingest_date") >= F.lit(day)


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


def empty_bronze(spark: SparkSession) -> DataFrame:
    """An empty DataFrame with bronze's schema."""
    empty = spark.createDataFrame(
        [],
        "topic string, partition int, offset long, timestamp timestamp, key binary, value binary",
    )
    framed = transforms.split_wire_format(empty)
    decoded, _ = transforms.decode_changes(framed, {}, reader_schema())
    return transforms.flag_late(transforms.to_bronze(decoded), 0)


def ensure_bronze(spark: SparkSession, settings: Settings) -> str:
    """Create the (empty) bronze table when missing, so streams can read it from the start."""
    path = BRONZE_QUAKE_CHANGES.path(settings.lake_uri)
    ensure_table(spark, BRONZE_QUAKE_CHANGES, path, empty_bronze(spark))
    return path


def held_offsets(spark: SparkSession, settings: Settings) -> dict[int, int]:
    """``{partition: next offset}`` after the records of the topic bronze and quarantine hold."""
    topic = settings.kafka.changes_topic
    held: dict[int, int] = {}
    for table in (BRONZE_QUAKE_CHANGES, QUARANTINE_QUAKE_CHANGES):
        path = table.path(settings.lake_uri)
        if not table_exists(spark, path):
            continue
        rows = (
            spark.read.format("delta")
            .load(path)
            .where(F.col("kafka_topic") == topic)
            .groupBy("kafka_partition")
            .agg(F.max("kafka_offset").alias("last"))
            .collect()
        )
        for row in rows:
            partition, after = int(row.kafka_partition), int(row.last) + 1
            held[partition] = max(held.get(partition, 0), after)
    return held


def resume_offsets(spark: SparkSession, settings: Settings) -> dict[int, int] | None:
    """Where a query without a checkpoint starts: right after what the lake holds.

    ``{partition: offset}`` for every partition of the topic (Spark needs them
    all; -2 = earliest for a partition the lake has nothing of yet), or None
    when the lake holds nothing of the topic (``spark.starting_offsets`` applies).
    """
    held = held_offsets(spark, settings)
    if not held:
        return None
    topic_partitions = partitions(settings.kafka, settings.kafka.changes_topic)
    return {p: held.get(p, -2) for p in topic_partitions}


def start(spark: SparkSession, settings: Settings, available_now: bool = False) -> StreamingQuery:
    """Start the ingest query; ``available_now`` reads what is in Kafka, then stops."""
    ensure_bronze(spark, settings)
    checkpoint = settings.checkpoint_dir(JOB, CHECKPOINT_SINK)
    starting = None
    if not checkpoints.has_started(spark, checkpoint):
        starting = resume_offsets(spark, settings)
        if starting is not None:
            log.warning(
                "%s has no checkpoint yet: it starts right after the Kafka offsets the lake "
                "already holds, %s",
                QUERY_NAME,
                starting,
            )
    stream = (
        spark.readStream.format("kafka").options(**kafka_reader_options(settings, starting)).load()
    )
    return start_query(
        stream.writeStream.foreachBatch(ChangeBatchWriter(settings, checkpoint)),
        settings,
        QUERY_NAME,
        checkpoint,
        available_now,
    )
