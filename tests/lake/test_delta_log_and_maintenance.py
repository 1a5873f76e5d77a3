"""Bronze's watermark read from the Delta log without Spark; compaction and VACUUM measured;
the time-travel proof of a job's commits. Real Delta tables written by the test session's Spark.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from core.settings import SparkSettings
from lake.delta_log import added_files, commit_versions, file_location, newest_value
from lake.maintenance import CompactionTarget, optimize, retention_hours, vacuum
from lake.time_travel import USER_METADATA_CONF, commit_marker, prove_unchanged


def _batch(spark: SparkSession, first: int, count: int, day: str, kafka_ts: str) -> DataFrame:
    return spark.range(first, first + count).select(
        F.col("id").alias("kafka_offset"),
        F.to_timestamp(F.lit(kafka_ts)).alias("kafka_timestamp"),
        F.to_date(F.lit(day)).alias("ingest_date"),
        (F.col("id") * 10).alias("value"),
    )


@pytest.fixture
def table(spark: SparkSession, tmp_path: Path) -> str:
    """A bronze-like table: four appends over two ingestion days, one file per append."""
    path = str(tmp_path / "table")
    for first, day, ts in (
        (0, "2019-02-15", "2019-02-15 10:00:00"),
        (10, "2019-02-15", "2019-02-15 23:59:00"),
        (20, "2019-02-16", "2019-02-16 00:20:00"),
        (30, "2019-02-16", "2019-02-16 00:40:00"),
    ):
        _batch(spark, first, 10, day, ts).coalesce(1).write.format("delta").mode(
            "append"
        ).partitionBy("ingest_date").save(path)
    return path


def test_log_actions_are_read_as_delta_writes_them() -> None:
    lines = [
        json.dumps({"commitInfo": {"operation": "WRITE"}}),
        json.dumps(
            {
                "add": {
                    "path": "ingest_date=2019-02-15/part-0%3A1.parquet",
                    "partitionValues": {"ingest_date": "2019-02-15"},
                    "dataChange": True,
                }
            }
        ),
        json.dumps(
            {"add": {"path": "s3://b/x.parquet", "partitionValues": {}, "dataChange": False}}
        ),
        json.dumps({"remove": {"path": "old.parquet"}}),
    ]
    files = added_files(lines)
    assert [(f.path, f.data_change) for f in files] == [
        ("ingest_date=2019-02-15/part-0%3A1.parquet", True),
        ("s3://b/x.parquet", False),
    ]
    assert (
        file_location("/lake/t", files[0].path) == "/lake/t/ingest_date=2019-02-15/part-0:1.parquet"
    )
    assert file_location("/lake/t", files[1].path) == "s3://b/x.parquet"
    assert commit_versions(["00000000000000000003.json", "x.crc", "00000000000000000010.json"]) == [
        10,
        3,
    ]


def test_watermark_is_the_newest_kafka_timestamp_of_the_newest_commits(
    spark: SparkSession, table: str
) -> None:
    newest = datetime(2019, 2, 16, 0, 40, tzinfo=UTC)
    assert newest_value(table, "kafka_timestamp") == newest
    # Only the newest commit looked at: still its newest row.
    assert newest_value(table, "kafka_timestamp", max_commits=1) == newest
    # A compaction adds files of old rows (dataChange=false): they do not count.
    spark.sql(f"OPTIMIZE delta.`{table}`")
    assert newest_value(table, "kafka_timestamp", max_commits=1) is None
    assert newest_value(table, "kafka_timestamp") == newest


def test_optimize_measures_the_partitions_it_compacts_and_commits_nothing_twice(
    spark: SparkSession, table: str
) -> None:
    before = spark.read.format("delta").load(table)
    rows = sorted(before.collect())
    target = CompactionTarget("t", table, "ingest_date IN ('2019-02-15')")
    result = optimize(spark, target)
    assert (result.files_before, result.files_after) == (2, 1)
    assert (result.files_added, result.files_removed) == (1, 2)
    assert result.bytes_before > 0 and result.bytes_after > 0
    assert result.committed
    assert sorted(spark.read.format("delta").load(table).collect()) == rows
    again = optimize(spark, target)
    assert (again.files_before, again.files_after, again.committed) == (1, 1, False)
    # ZORDER rewrites the partition every time: a new version, the same rows.
    zordered = optimize(
        spark, CompactionTarget("t", table, "ingest_date = '2019-02-16'", ("value",))
    )
    assert zordered.committed and (zordered.files_before, zordered.files_after) == (2, 1)
    assert sorted(spark.read.format("delta").load(table).collect()) == rows


def test_vacuum_keeps_the_time_travel_window(spark: SparkSession, table: str) -> None:
    optimize(spark, CompactionTarget("t", table))
    result = vacuum(spark, "t", table, 168)
    # Files removed minutes ago are inside the retention: none deleted, history readable.
    assert result.files_deleted == 0 and result.table_files == 2
    assert spark.read.format("delta").option("versionAsOf", 0).load(table).count() == 10
    with pytest.raises(ValueError, match="7-day"):
        vacuum(spark, "t", table, 24)
    # A longer retention becomes the table's property (VACUUM's RETAIN is ignored by Delta 4).
    vacuum(spark, "t", table, 240)
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{table}`").first()
    assert detail is not None
    assert detail["properties"]["delta.deletedFileRetentionDuration"] == "interval 240 hours"
    assert retention_hours("interval 1 week") == 168 and retention_hours(None) == 168
    assert result.mode == "lite"
    assert vacuum(spark, "t", table, 240, "full").mode == "full"
    with pytest.raises(ValueError, match="lite, full"):
        vacuum(spark, "t", table, 240, "fast")


def test_a_refused_lite_vacuum_runs_a_full_one(spark: SparkSession, table: str) -> None:
    """A log cleaned up past its start (no version 0) with no LITE run before: Delta refuses
    LITE (DELTA_CANNOT_VACUUM_LITE) and the clean-up still happens, as FULL."""
    spark.sql(f"ALTER TABLE delta.`{table}` SET TBLPROPERTIES ('delta.checkpointInterval' = '2')")
    optimize(spark, CompactionTarget("t", table))  # version 5, after the checkpoint of 4
    log_dir = Path(table) / "_delta_log"
    assert (log_dir / f"{4:020d}.checkpoint.parquet").exists()
    for version in range(4):  # what the log's clean-up (logRetentionDuration) does
        (log_dir / f"{version:020d}.json").unlink()
        for crc in log_dir.glob(f"{version:020d}.crc"):
            crc.unlink()
    for checkpoint in log_dir.glob(f"{2:020d}.checkpoint.parquet"):
        checkpoint.unlink()
    # Version 4, now the log's first, is past the retention (commit times are file times).
    ten_days_ago = time.time() - 10 * 86400
    for old in log_dir.glob(f"{4:020d}.*"):
        os.utime(old, (ten_days_ago, ten_days_ago))
    result = vacuum(spark, "t", table, 168)
    assert result.mode == "full (lite refused)"
    assert result.table_files == 2


def test_the_proof_sees_a_job_s_commits_only_and_catches_a_changed_row(
    spark: SparkSession, table: str
) -> None:
    marker = commit_marker("lakehouse_daily", "manual__2019-02-16T00:00:00+00:00")
    start = spark.sql(f"DESCRIBE HISTORY delta.`{table}` LIMIT 1").first()
    assert start is not None
    version_before = int(start["version"])
    spark.conf.set(USER_METADATA_CONF, marker)
    try:
        spark.sql(f"OPTIMIZE delta.`{table}`").collect()
        spark.conf.unset(USER_METADATA_CONF)
        # The stream's append in between: not the job's commit.
        _batch(spark, 40, 5, "2019-02-16", "2019-02-16 01:00:00").write.format("delta").mode(
            "append"
        ).save(table)
        proof = prove_unchanged(spark, "t", table, ("kafka_offset",), version_before, marker=marker)
        assert [c.operation for c in proof.commits] == ["OPTIMIZE"]
        assert proof.unchanged and proof.keys_unique and proof.rows == 45
        spark.conf.set(USER_METADATA_CONF, marker)
        spark.sql(f"UPDATE delta.`{table}` SET value = -1 WHERE kafka_offset = 3")
        changed = prove_unchanged(
            spark, "t", table, ("kafka_offset",), version_before, marker=marker
        )
        assert not changed.unchanged
        assert changed.differences[-1][1:] == (1, 1)
    finally:
        spark.conf.unset(USER_METADATA_CONF)


def test_a_full_vacuum_lists_with_the_settings_parallelism(spark: SparkSession, table: str) -> None:
    """Delta's full VACUUM lists the table's folders in a job of
    ``spark.sql.sources.parallelPartitionDiscovery.parallelism`` tasks: Spark's default of
    10,000 made it take 20 s for a table of four folders on two cores."""
    context = spark.sparkContext
    context.setJobGroup("full-vacuum", "the listing's tasks")
    try:
        vacuum(spark, "t", table, 168, "full")
    finally:
        context.setJobGroup("", "")
    tracker = context.statusTracker()
    stages = [
        stage
        for job in tracker.getJobIdsForGroup("full-vacuum")
        if (info := tracker.getJobInfo(job)) is not None
        for stage_id in info.stageIds
        if (stage := tracker.getStageInfo(stage_id)) is not None
    ]
    assert stages, "the VACUUM ran no Spark job"
    limit = SparkSettings().file_listing_parallelism
    assert max(stage.numTasks for stage in stages) <= limit, [s.numTasks for s in stages]
