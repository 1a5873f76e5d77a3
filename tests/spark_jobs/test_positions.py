"""What the ingest writer asks after a start: which Kafka positions a table holds (real Delta)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F  # noqa: N812

from lake.tables import Table
from spark_jobs import checkpoints
from spark_jobs.delta_io import append, holds_from, not_held
from spark_jobs.transforms import KAFKA_POSITION

TABLE = Table(name="positions", layer="bronze", partition_by=("ingest_date",), description="t")


def _rows(spark: SparkSession, offsets: range, day: str, partition: int = 0):  # type: ignore[no-untyped-def]
    return spark.createDataFrame(
        [("t", partition, o, f"v{o}") for o in offsets],
        "kafka_topic string, kafka_partition int, kafka_offset long, value string",
    ).withColumn("ingest_date", F.lit(day).cast("date"))


def _offsets(rows) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    return sorted((r.kafka_partition, r.kafka_offset) for r in rows.collect())


def test_only_the_positions_the_table_does_not_hold_are_left(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = str(tmp_path / "t")
    batch = _rows(spark, range(10, 20), "2026-12-07").unionByName(
        _rows(spark, range(10, 12), "2026-12-07", partition=1)
    )
    assert not_held(spark, batch, path, KAFKA_POSITION).count() == 12, "no table: all"

    append(_rows(spark, range(0, 15), "2026-12-07"), TABLE, path)
    left = not_held(spark, batch, path, KAFKA_POSITION)
    assert left.columns == batch.columns
    assert _offsets(left) == [(0, o) for o in range(15, 20)] + [(1, 10), (1, 11)]


def test_a_partition_bound_leaves_out_rows_before_it(spark: SparkSession, tmp_path: Path) -> None:
    """The bound is trusted: rows held in a partition it leaves out are not looked at."""
    path = str(tmp_path / "t")
    append(_rows(spark, range(0, 5), "2026-12-01"), TABLE, path)
    append(_rows(spark, range(5, 10), "2026-12-07"), TABLE, path)
    batch = _rows(spark, range(0, 10), "2026-12-08")
    since = F.col("ingest_date") >= F.lit(dt.date(2026, 12, 6))
    assert _offsets(not_held(spark, batch, path, KAFKA_POSITION, since)) == [
        (0, o) for o in range(5)
    ]
    assert not_held(spark, batch, path, KAFKA_POSITION).count() == 0


def test_a_batch_s_commit_time_comes_from_its_commit_file(
    spark: SparkSession, tmp_path: Path
) -> None:
    commits = tmp_path / "checkpoint" / "commits"
    commits.mkdir(parents=True)
    (commits / "4").write_text("v1\n{}\n")
    os.utime(commits / "4", (1_796_000_000, 1_796_000_000))
    checkpoint = str(tmp_path / "checkpoint")
    assert checkpoints.committed_at_ms(spark, checkpoint, 4) == 1_796_000_000_000
    assert checkpoints.committed_at_ms(spark, checkpoint, 5) is None
    assert checkpoints.committed_at_ms(spark, checkpoint, -1) is None


def test_holds_from_says_whether_any_record_at_or_after_a_start_is_held(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = str(tmp_path / "t")
    assert not holds_from(spark, path, "t", {0: 0}), "no table"
    append(_rows(spark, range(0, 15), "2026-12-01"), TABLE, path)
    append(_rows(spark, range(0, 5), "2026-12-07", partition=1), TABLE, path)
    assert holds_from(spark, path, "t", {0: 15, 1: 4})
    assert holds_from(spark, path, "t", {0: 14, 1: 5})
    assert not holds_from(spark, path, "t", {0: 15, 1: 5})
    assert not holds_from(spark, path, "other", {0: 0, 1: 0})
    assert not holds_from(spark, path, "t", {})
    assert holds_from(spark, path, "t", None), "None: any record of the topic"
    assert not holds_from(spark, path, "other", None)
    since = F.col("ingest_date") >= F.lit(dt.date(2026, 12, 6))
    assert not holds_from(spark, path, "t", {0: 14, 1: 5}, since), "day 1 is before the bound"


def test_where_a_batch_starts_comes_from_the_previous_batch_s_plan(
    spark: SparkSession, tmp_path: Path
) -> None:
    offsets = tmp_path / "checkpoint" / "offsets"
    offsets.mkdir(parents=True)
    (offsets / "6").write_text('v1\n{"batchWatermarkMs":0}\n{"t":{"1":40,"0":35}}\n')
    checkpoint = str(tmp_path / "checkpoint")
    assert checkpoints.planned_kafka_offsets(spark, checkpoint, "t", 6) == {0: 35, 1: 40}
    assert checkpoints.planned_kafka_offsets(spark, checkpoint, "other", 6) is None
    assert checkpoints.planned_kafka_offsets(spark, checkpoint, "t", 7) is None
    assert checkpoints.planned_kafka_offsets(spark, checkpoint, "t", -1) is None


def test_where_batch_0_starts_comes_from_the_kafka_source_s_initial_offsets(
    spark: SparkSession, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint"
    assert checkpoints.initial_kafka_offsets(spark, str(checkpoint), "t") is None
    (checkpoint / "sources" / "0").mkdir(parents=True)
    # As Spark writes it: a zero byte, the version, the offsets.
    (checkpoint / "sources" / "0" / "0").write_bytes(b'\x00v1\n{"t":{"1":628,"0":529}}')
    assert checkpoints.initial_kafka_offsets(spark, str(checkpoint), "t") == {0: 529, 1: 628}
    assert checkpoints.initial_kafka_offsets(spark, str(checkpoint), "other") is None
    assert checkpoints.parse_initial_offsets("") == {}
    assert checkpoints.parse_initial_offsets('v1\n{"t":{"0":3}}') == {"t": {"0": 3}}


def test_a_checkpoint_s_creation_time_comes_from_its_metadata_file(
    spark: SparkSession, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint"
    assert checkpoints.created_at_ms(spark, str(checkpoint)) is None
    checkpoint.mkdir()
    (checkpoint / "metadata").write_text('{"id":"q"}\n')
    os.utime(checkpoint / "metadata", (1_796_000_000, 1_796_000_000))
    assert checkpoints.created_at_ms(spark, str(checkpoint)) == 1_796_000_000_000
