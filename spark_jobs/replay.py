"""Batch is a replay of the stream: the same transforms over a range, written idempotently.

Two sources of a replay:
- a Kafka range, by offsets (``{"topic": {"0": 10, ...}}`` JSON, as Spark's Kafka
  source takes them) or by timestamps: the records are decoded by the ingest
  job's own ``ChangeBatchWriter.decode``;
- a bronze range, by ingestion time: the rows bronze already holds.

From the replayed change events the derived tables are recomputed with the
live stream's functions (``transforms.latest_per_entity``,
``transforms.window_aggregates``), excluding the events the live stream
recorded as late, so a replay gives exactly the live rows. Each table is
written with ``replaceWhere`` on the range it covers, so running a replay
twice changes nothing. Targets are side tables (``<layer>_replay``) by
default, or the live tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pyspark.sql import Observation
from pyspark.sql import functions as F  # noqa: N812

from core.errors import UserFacingError
from core.kafka_topics import resolve_offsets
from core.settings import KafkaSettings, Settings
from lake.tables import (
    BRONZE_QUAKE_CHANGES,
    QUAKE_WINDOWS_1H,
    QUAKE_WINDOWS_1M,
    SILVER_QUAKES,
    Table,
)
from spark_jobs import transforms
from spark_jobs.aggregates_stream import HOUR, HOUR_SLIDE, MINUTE
from spark_jobs.bronze_stream import ChangeBatchWriter, kafka_reader_options
from spark_jobs.delta_io import ensure_table, merge_upsert, table_exists

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class KafkaRange:
    """A range of the change topic: offsets (JSON) or epoch-ms timestamps, end exclusive."""

    starting_offsets: str | None = None
    ending_offsets: str | None = None
    starting_timestamp_ms: int | None = None
    ending_timestamp_ms: int | None = None

    def resolve(self, kafka: KafkaSettings, topic: str) -> dict[int, tuple[int, int]]:
        """``{partition: (first offset, end offset exclusive)}`` the range covers now."""
        return resolve_offsets(
            kafka,
            topic,
            _bound(self.starting_offsets, self.starting_timestamp_ms, "earliest", topic),
            _bound(self.ending_offsets, self.ending_timestamp_ms, "latest", topic),
        )


def _bound(
    offsets: str | None, timestamp_ms: int | None, default: str, topic: str
) -> dict[int, int] | str | int:
    if offsets:
        text = _check_offsets(offsets)
        if text in ("earliest", "latest"):
            return text
        parsed = json.loads(text)
        if topic not in parsed:
            raise UserFacingError(
                f"Offsets {text!r} do not name the topic {topic!r}: give them as "
                f'\'{{"{topic}": {{"0": 0, "1": 0}}}}\'.'
            )
        return {int(p): int(o) for p, o in parsed[topic].items()}
    if timestamp_ms is not None:
        return timestamp_ms
    return default


def positions_predicate(topic: str, offsets: dict[int, tuple[int, int]]) -> str:
    """A SQL predicate on bronze's Kafka columns selecting exactly ``offsets``."""
    ranges = [
        f"(kafka_topic = '{topic}' AND kafka_partition = {p} "
        f"AND kafka_offset >= {first} AND kafka_offset < {end})"
        for p, (first, end) in sorted(offsets.items())
        if end > first
    ]
    return " OR ".join(ranges) if ranges else "false"


def _check_offsets(text: str) -> str:
    if text in ("earliest", "latest"):
        return text
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UserFacingError(
            f"Offsets {text!r} are not valid: give earliest, latest or JSON like "
            '\'{"usgs.quake_changes": {"0": 0, "1": 0}}\'.'
        )
    return text


def replay_table(table: Table) -> Table:
    """The side table a replay writes instead of ``table``."""
    return Table(table.name, f"{table.layer}_replay", table.partition_by, table.description)


def read_kafka_range(
    spark: SparkSession, settings: Settings, topic: str, offsets: dict[int, tuple[int, int]]
) -> DataFrame:
    """The Kafka records at ``offsets`` (read_committed), as the stream would see them."""
    options = kafka_reader_options(settings)
    for streaming_only in ("startingOffsets", "maxOffsetsPerTrigger", "failOnDataLoss"):
        options.pop(streaming_only, None)
    options["startingOffsets"] = json.dumps({topic: {str(p): r[0] for p, r in offsets.items()}})
    options["endingOffsets"] = json.dumps({topic: {str(p): r[1] for p, r in offsets.items()}})
    # Split the partitions' offset ranges into several tasks per core: one task
    # per Kafka partition leaves cores idle whenever partitions outnumber them
    # unevenly (3 partitions on 2 cores: the third runs alone).
    options["minPartitions"] = str(4 * spark.sparkContext.defaultParallelism)
    return spark.read.format("kafka").options(**options).load()


def _replace(rows: DataFrame, table: Table, path: str, predicate: str) -> None:
    ensure_table(rows.sparkSession, table, path, rows)
    writer = rows.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
    writer.save(path)


def minute_windows(bronze_rows: DataFrame) -> DataFrame:
    """The minute window rows the live aggregates hold for ``bronze_rows``, in batch."""
    # The live query keeps the first copy of a version: copies are equal but for
    # produced_at_ms, which only the latency column depends on. One row per
    # version, grouped with its network and aggregating only fixed-width
    # columns, is a hash aggregation of the few columns the windows use;
    # ``dropDuplicates`` keeps the first of every column, a string among them,
    # which makes it a sort aggregation (5.6 s against 3.3 s for 3.1 M rows).
    versions = (
        transforms.on_time(bronze_rows)
        .groupBy("entity_id", "updated_ms", "net")
        .agg(
            F.first("mag").alias("mag"),
            F.first("event_time_ms").alias("event_time_ms"),
            F.min("produced_at_ms").alias("produced_at_ms"),
        )
    )
    return transforms.window_aggregates(transforms.with_event_time(versions), MINUTE)


def replay(
    spark: SparkSession,
    settings: Settings,
    bronze_rows: DataFrame,
    *,
    to_live: bool = False,
) -> dict[str, int]:
    """Recompute silver and the windows from ``bronze_rows`` into side (or live) tables."""
    counts: dict[str, int] = {}
    silver_table = SILVER_QUAKES if to_live else replay_table(SILVER_QUAKES)
    # One silver row per entity: the newest version of each, computed once, both
    # counts the entities and picks the rows (a separate count of the distinct
    # entities took another 2 s for 3.1 M records).
    newest = transforms.newest_versions(bronze_rows).persist()
    counts["silver"] = int(newest.count())
    merge_upsert(
        spark,
        transforms.latest_per_entity(bronze_rows, newest),
        silver_table,
        silver_table.path(settings.lake_uri),
        ("entity_id",),
        update_condition=transforms.SILVER_UPDATE_CONDITION,
    )
    newest.unpersist()
    minutes = minute_windows(bronze_rows).persist()
    # The hours roll up from the replayed minutes, as the live rollup does from the live ones.
    hours = transforms.rollup_windows(minutes, HOUR, HOUR_SLIDE).persist()
    for live_table, windows in ((QUAKE_WINDOWS_1M, minutes), (QUAKE_WINDOWS_1H, hours)):
        table = live_table if to_live else replay_table(live_table)
        span = windows.agg(F.min("window_start"), F.max("window_end")).first()
        if span is not None and span[0] is not None:
            predicate = (
                f"window_start >= {transforms.sql_timestamp(span[0])} "
                f"AND window_end <= {transforms.sql_timestamp(span[1])}"
            )
            _replace(windows, table, table.path(settings.lake_uri), predicate)
        counts[live_table.name] = int(windows.count())
    hours.unpersist()
    minutes.unpersist()
    return counts


def with_live_lateness(
    spark: SparkSession, settings: Settings, bronze_rows: DataFrame
) -> DataFrame:
    """Add ``is_late`` as the live stream decided it (by Kafka position); unseen rows are on time.

    Lateness depends on what bronze held when a batch arrived, so a replay takes
    the live decision instead of deciding again with other batch boundaries.
    Only the late positions are looked up (a small set, broadcast), so this
    costs no shuffle of the replayed rows.
    """
    path = BRONZE_QUAKE_CHANGES.path(settings.lake_uri)
    if not table_exists(spark, path):
        return bronze_rows.withColumn("is_late", F.lit(False))
    late = (
        spark.read.format("delta")
        .load(path)
        .where(F.col("is_late"))
        .select(*POSITION, F.lit(True).alias("is_late"))
    )
    return bronze_rows.join(F.broadcast(late), list(POSITION), "left").withColumn(
        "is_late", F.coalesce(F.col("is_late"), F.lit(False))
    )


POSITION = ("kafka_topic", "kafka_partition", "kafka_offset")


def replay_kafka(
    spark: SparkSession, settings: Settings, span: KafkaRange, *, to_live: bool = False
) -> dict[str, int]:
    """Replay a Kafka range: decode, write bronze (replaceWhere on the positions), derive.

    The range is resolved to concrete offsets first, so the records read and
    the positions bronze replaces are the same. The Kafka records are read and
    decoded once, straight into bronze (the counts are observed during that
    write); silver and the windows are then computed from the bronze rows just
    written, read back from Delta rather than held in memory.
    """
    topic = settings.kafka.changes_topic
    offsets = span.resolve(settings.kafka, topic)
    predicate = positions_predicate(topic, offsets)
    writer = ChangeBatchWriter(settings)
    seen = Observation()
    classified = writer.classify(read_kafka_range(spark, settings, topic, offsets))
    decoded, _ = writer.split(
        classified.observe(seen, F.count(F.lit(1)).alias("records"), transforms.rejected_count())
    )
    bronze_table = BRONZE_QUAKE_CHANGES if to_live else replay_table(BRONZE_QUAKE_CHANGES)
    bronze_path = bronze_table.path(settings.lake_uri)
    _replace(with_live_lateness(spark, settings, decoded), bronze_table, bronze_path, predicate)
    observed = seen.get
    counts = {"records": int(observed["records"]), "quarantined": int(observed["rejected"])}
    bronze_rows = spark.read.format("delta").load(bronze_path).where(predicate)
    counts["bronze"] = int(bronze_rows.count())
    if counts["bronze"]:
        counts.update(replay(spark, settings, bronze_rows, to_live=to_live))
    return counts


def replay_bronze(
    spark: SparkSession,
    settings: Settings,
    ingested_from: datetime | None,
    ingested_to: datetime | None,
    *,
    to_live: bool = False,
) -> dict[str, int]:
    """Replay bronze rows ingested in [from, to): recompute silver and the windows."""
    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    if ingested_from is not None:
        bronze = bronze.where(F.col("ingested_at") >= F.lit(ingested_from))
    if ingested_to is not None:
        bronze = bronze.where(F.col("ingested_at") < F.lit(ingested_to))
    # Not cached: each step reads only the columns it needs from Parquet, which
    # costs less than caching every column of the range first (3.1 M rows in
    # a fresh JVM: 44 s uncached, 62 s cached).
    counts = {"bronze": int(bronze.count())}
    if counts["bronze"]:
        counts.update(replay(spark, settings, bronze, to_live=to_live))
    return counts
