"""Silver (newest version wins, deletes as tombstones) and event-time windows, on static rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from lake.tables import BRONZE_QUAKE_CHANGES, QUAKE_WINDOWS_1M, SILVER_QUAKES, Table
from spark_jobs import replay, transforms
from spark_jobs.delta_io import append_once, merge_upsert

COLUMNS = (
    "entity_id string, op string, updated_ms long, event_time_ms long, produced_at_ms long, "
    "net string, mag double, kafka_partition int, kafka_offset long, kafka_timestamp timestamp, "
    "schema_id int, ingest_date date, kafka_topic string"
)
T0 = int(datetime(2026, 11, 26, 12, 0, 0).timestamp() * 1000)
TOPIC = "usgs.quake_changes"


def rows(spark: SparkSession, data: list[tuple[object, ...]]) -> DataFrame:
    full = [(*r, datetime(2026, 11, 26), 1, datetime(2026, 11, 26).date(), TOPIC) for r in data]
    return spark.createDataFrame(full, COLUMNS)


def test_newest_version_wins_and_deletes_are_tombstones(spark: SparkSession) -> None:
    bronze = rows(
        spark,
        [
            ("a", "UPSERT", 1, T0, 0, "ci", 1.0, 0, 0),
            ("a", "UPSERT", 3, T0, 0, "ci", 3.0, 0, 2),
            ("a", "UPSERT", 2, T0, 0, "ci", 2.0, 0, 1),  # older, arrives later
            ("b", "UPSERT", 5, T0, 0, "us", 4.0, 1, 0),
            ("b", "DELETE", 6, T0, 0, "us", 4.0, 1, 1),
            ("c", "UPSERT", 7, T0, 0, "ak", 1.5, 2, 0),
            ("c", "UPSERT", 7, T0, 0, "ak", 1.5, 2, 5),  # the same version delivered twice
        ],
    )
    silver = {r.entity_id: r for r in transforms.latest_per_entity(bronze).collect()}
    assert (silver["a"].updated_ms, silver["a"].mag, silver["a"].is_deleted) == (3, 3.0, False)
    assert (silver["b"].updated_ms, silver["b"].is_deleted) == (6, True)
    assert (silver["c"].kafka_offset, silver["c"].is_deleted) == (0, False)
    assert "kafka_timestamp" not in transforms.latest_per_entity(bronze).columns


def test_one_silver_row_when_two_topics_hold_a_version_at_the_same_position(
    spark: SparkSession,
) -> None:
    # A mirrored topic has the same partitions and offsets as its source.
    version = ("a", "UPSERT", 3, T0, 0, "ci", 3.0, 0, 7)
    bronze = rows(spark, [version])
    mirrored = bronze.unionByName(bronze.withColumn("kafka_topic", F.lit("mirror")))
    assert transforms.latest_per_entity(mirrored).count() == 1


def test_newest_version_aggregates_one_column_with_a_hash_aggregation(spark: SparkSession) -> None:
    # The max of a struct is a sort aggregation of every row; with every column
    # in the struct, every column went through two sorts (twice as slow on a
    # replay of 3.1 M rows). Only the newest updated_ms per entity is aggregated.
    bronze = rows(spark, [("a", "UPSERT", 1, T0, 0, "ci", 1.0, 0, 0)])
    plan = transforms.latest_per_entity(bronze)._jdf.queryExecution().executedPlan().toString()
    aggregates = [line for line in plan.splitlines() if "Aggregate(" in line]
    assert aggregates
    assert all("HashAggregate(" in line for line in aggregates)
    assert not [line for line in aggregates if "mag#" in line or "op#" in line]


def test_first_copy_of_the_newest_version_wins_whatever_the_row_order(spark: SparkSession) -> None:
    copies = [
        ("a", "UPSERT", 4, T0, 0, "ci", 4.0, 1, 9),
        ("a", "UPSERT", 4, T0, 0, "ci", 4.0, 0, 8),
        ("a", "UPSERT", 4, T0, 0, "ci", 4.0, 0, 3),
        ("a", "UPSERT", 2, T0, 0, "ci", 2.0, 0, 1),
    ]
    for ordered in (copies, list(reversed(copies))):
        (winner,) = transforms.latest_per_entity(rows(spark, ordered).repartition(3)).collect()
        assert (winner.updated_ms, winner.kafka_partition, winner.kafka_offset) == (4, 0, 3)


def test_replayed_minute_windows_count_a_version_once_and_leave_late_events_out(
    spark: SparkSession,
) -> None:
    bronze = rows(
        spark,
        [
            ("a", "UPSERT", 1, T0 + 5_000, 10, "ci", 1.0, 0, 0),
            ("b", "UPSERT", 1, T0 + 6_000, 20, "ci", 2.0, 0, 1),
            ("c", "UPSERT", 1, T0 + 7_000, 30, "ci", 4.0, 0, 2),  # flagged late below
            ("a", "UPSERT", 1, T0 + 5_000, 90, "ci", 1.0, 0, 3),  # a second delivery of a's version
        ],
    ).withColumn("is_late", F.col("entity_id") == F.lit("c"))
    windows = replay.minute_windows(bronze)
    [window] = windows.collect()
    assert (window.event_count, window.max_mag, window.distinct_entities) == (2, 2.0, 2)
    # Each version counts with its first delivery, as the live query keeps the first copy.
    assert window.last_produced_at_ms == 20
    # dropDuplicates keeps the first of every column, a string among them: a sort aggregation.
    assert "SortAggregate" not in windows._jdf.queryExecution().executedPlan().toString()


def test_tumbling_and_sliding_windows(spark: SparkSession) -> None:
    minute = 60_000
    bronze = rows(
        spark,
        [
            ("a", "UPSERT", 1, T0 + 5_000, 10, "ci", 1.0, 0, 0),
            ("a", "UPSERT", 2, T0 + 20_000, 30, "ci", 3.0, 0, 1),  # a revision: a second event
            ("b", "UPSERT", 1, T0 + 50_000, 20, "ci", 2.0, 0, 2),
            ("c", "UPSERT", 1, T0 + minute + 1, 40, "ci", None, 0, 3),
            ("d", "UPSERT", 1, T0 + 1_000, 50, None, 5.0, 0, 4),
        ],
    )
    events = transforms.with_event_time(bronze)
    one_minute = {
        (r.window_start, r.net): r
        for r in transforms.window_aggregates(events, "1 minute").collect()
    }
    first = one_minute[(datetime(2026, 11, 26, 12, 0), "ci")]
    assert (first.event_count, first.max_mag, first.distinct_entities) == (3, 3.0, 2)
    assert first.mean_mag == 2.0 and first.last_produced_at_ms == 30
    second = one_minute[(datetime(2026, 11, 26, 12, 1), "ci")]
    assert (second.event_count, second.max_mag, second.mean_mag) == (1, None, None)
    assert one_minute[(datetime(2026, 11, 26, 12, 0), "?")].event_count == 1

    minutes = transforms.window_aggregates(events, "1 minute")
    hourly = transforms.rollup_windows(minutes, "1 hour", "5 minutes").collect()
    # Every event falls in 12 overlapping one-hour windows sliding by 5 minutes.
    assert sum(r.event_count for r in hourly) == 5 * 12
    noon = {r.net: r for r in hourly if r.window_start == datetime(2026, 11, 26, 12, 0)}
    # Rolled up from two minutes of "ci": the sketches unite (a counted once), the
    # mean is over the magnitudes present, the newest produced-at is kept.
    assert (noon["ci"].event_count, noon["ci"].distinct_entities) == (4, 3)
    assert (noon["ci"].max_mag, noon["ci"].mean_mag) == (3.0, 2.0)
    assert noon["ci"].last_produced_at_ms == 40


def test_hour_windows_of_changed_minutes_only(spark: SparkSession) -> None:
    from spark_jobs.aggregates_stream import hour_windows_of

    bronze = rows(
        spark,
        [
            ("a", "UPSERT", 1, T0 + 5_000, 10, "ci", 1.0, 0, 0),
            ("b", "UPSERT", 1, T0 + 3 * 3_600_000, 20, "ci", 2.0, 0, 1),
        ],
    )
    minutes = transforms.window_aggregates(transforms.with_event_time(bronze), "1 minute")
    changed = minutes.where("window_start = timestamp '2026-11-26 12:00:00'")
    hours = hour_windows_of(minutes, changed).collect()
    # The 12 hour windows holding 12:00, each with event a only: b's hours are not touched.
    assert len(hours) == 12
    assert {r.event_count for r in hours} == {1}


def test_sql_timestamp_survives_a_machine_time_zone_other_than_utc(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    instant = "timestamp'2026-11-26 12:34:56.789'"  # read in the session zone, UTC
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        collected = spark.sql(f"select {instant} as t").first()
        assert collected is not None
        assert collected.t == datetime(2026, 11, 26, 7, 34, 56, 789000), "local naive time"
        same = spark.sql(f"select {transforms.sql_timestamp(collected.t)} = {instant}").first()
        assert same is not None and same[0] is True
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_durations() -> None:
    assert transforms.duration_ms("10 minutes") == 600_000
    assert transforms.duration_ms("1 hour") == 3_600_000
    assert transforms.duration_ms("30 seconds") == 30_000


def test_duration_refuses_garbage() -> None:
    import pytest

    with pytest.raises(ValueError, match="not a duration"):
        transforms.duration_ms("soon")


def test_lateness_is_a_property_of_the_record(spark: SparkSession) -> None:
    # Late = event time older than the record's own Kafka timestamp minus the
    # allowed lateness; what else arrived, and in which batch, plays no part.
    minute = 60_000
    kafka_ts = datetime.fromtimestamp(T0 / 1000)
    bronze = rows(
        spark,
        [
            ("a", "UPSERT", 1, T0, 0, "ci", 1.0, 0, 0),
            ("b", "UPSERT", 1, T0 - 9 * minute, 0, "ci", 1.0, 0, 1),
            ("c", "UPSERT", 1, T0 - 11 * minute, 0, "ci", 1.0, 0, 2),
            ("d", "UPSERT", 1, T0 + 3 * minute, 0, "ci", 1.0, 0, 3),
        ],
    ).withColumn("kafka_timestamp", F.lit(kafka_ts))
    flagged = {r.entity_id: r.is_late for r in transforms.flag_late(bronze, 10 * minute).collect()}
    assert flagged == {"a": False, "b": False, "c": True, "d": False}
    # The same rows in any grouping decide the same: no row depends on another.
    for entity in "abcd":
        alone = bronze.where(F.col("entity_id") == entity)
        assert transforms.flag_late(alone, 10 * minute).first().is_late == flagged[entity]
    assert {
        r.entity_id for r in transforms.on_time(transforms.flag_late(bronze, 10 * minute)).collect()
    } == {"a", "b", "d"}


def test_batch_stats_are_observed_while_the_rows_are_written(
    spark: SparkSession, tmp_path: Path
) -> None:
    bronze = transforms.flag_late(
        rows(
            spark,
            [
                ("a", "UPSERT", 1, T0, 1_000_050, "ci", 1.0, 0, 0),
                ("b", "UPSERT", 1, T0 - 3_600_000, 1_000_080, "ci", 1.0, 0, 1),
                ("c", "UPSERT", 1, T0 + 5, 1_000_250, "ci", 1.0, 0, 2),
            ],
        ).withColumn("kafka_timestamp", F.lit(datetime.fromtimestamp(T0 / 1000))),
        600_000,
    )
    observation = Observation()
    bronze.observe(observation, *transforms.batch_metrics()).write.parquet(str(tmp_path / "out"))
    stats = transforms.batch_stats(observation.get)
    assert (stats.rows, stats.late) == (3, 1)
    assert sorted(stats.produced_histogram) == [(1_000_000, 2), (1_000_200, 1)]


def test_latency_histogram_from_produced_times() -> None:
    from monitoring.stream_metrics import END_TO_END_LATENCY, observe_latency_histogram

    observe_latency_histogram("unit-test", [(10_000, 3), (11_500, 1)], committed_ms=12_000.0)
    family = next(iter(END_TO_END_LATENCY.collect()))
    samples = {
        (s.name, s.labels.get("le")): s.value
        for s in family.samples
        if s.labels.get("sink") == "unit-test"
    }
    assert samples[("streamhouse_end_to_end_latency_seconds_bucket", "0.5")] == 1
    assert samples[("streamhouse_end_to_end_latency_seconds_bucket", "2.0")] == 4
    assert samples[("streamhouse_end_to_end_latency_seconds_count", None)] == 4
    assert samples[("streamhouse_end_to_end_latency_seconds_sum", None)] == 6.5


def test_window_merges_rewrite_files_and_silver_merges_write_deletion_vectors(
    spark: SparkSession, tmp_path: Path
) -> None:
    def update_one_of_two(table: Table, make: Callable[[DataFrame], DataFrame]) -> dict[str, str]:
        """MERGE two rows, then a new value of one of them: what did the second MERGE do?"""
        path, key = (
            str(tmp_path / table.name),
            (transforms.WINDOW_KEY if table.layer == "aggregates" else ("entity_id",)),
        )
        both = rows(spark, [("a", "UPSERT", 1, T0, T0, "ci", 1.0, 0, 0),
                            ("b", "UPSERT", 1, T0, T0, "us", 1.0, 0, 1)])  # fmt: skip
        # One file holding both rows, so the second MERGE touches one row of it.
        merge_upsert(spark, make(both).coalesce(1), table, path, key)
        newer = rows(spark, [("a", "UPSERT", 2, T0, T0, "ci", 2.0, 0, 2)])
        merge_upsert(spark, make(newer), table, path, key)
        detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
        history = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()
        assert detail is not None and history is not None
        return {
            "dv": detail["properties"]["delta.enableDeletionVectors"],
            "files": str(detail["numFiles"]),
            "dvs_added": history["operationMetrics"]["numTargetDeletionVectorsAdded"],
        }

    def minute_windows(bronze: DataFrame) -> DataFrame:
        return transforms.window_aggregates(transforms.with_event_time(bronze), "1 minute")

    # The window table stays at one file, rewritten; silver marks the old row.
    assert update_one_of_two(QUAKE_WINDOWS_1M, minute_windows) == {
        "dv": "false", "files": "1", "dvs_added": "0"
    }  # fmt: skip
    assert update_one_of_two(SILVER_QUAKES, transforms.latest_per_entity) == {
        "dv": "true", "files": "2", "dvs_added": "1"
    }  # fmt: skip


def test_a_window_merge_rewrites_only_its_days_files(spark: SparkSession, tmp_path: Path) -> None:
    """Windows of two days, then an update of one window of the second: the MERGE copies no
    row of the first day, and a read of one day reads only that day's files. (Unpartitioned,
    the first MERGE wrote both days into one file, which every later MERGE rewrote whole.)"""
    path = str(tmp_path / "windows")
    next_day = T0 + 86_400_000
    midnight = datetime.fromtimestamp(next_day / 1000).replace(hour=0)

    def windows(data: list[tuple[object, ...]]) -> DataFrame:
        bronze = rows(spark, data)
        return transforms.window_aggregates(transforms.with_event_time(bronze), "1 minute")

    first = [(f"e{i}", "UPSERT", 1, T0 + i * 60_000, T0, "ci", 1.0, 0, i) for i in range(20)]
    first.append(("x", "UPSERT", 1, next_day, T0, "ci", 1.0, 0, 99))
    merge_upsert(spark, windows(first).coalesce(1), QUAKE_WINDOWS_1M, path, transforms.WINDOW_KEY)
    # A second quake in the next day's window: that window's row is updated.
    again = windows([first[-1], ("y", "UPSERT", 1, next_day, T0, "ci", 2.0, 0, 100)])
    merge_upsert(
        spark,
        again,
        QUAKE_WINDOWS_1M,
        path,
        transforms.WINDOW_KEY,
        target_filter=f"target.window_start >= timestamp'{midnight:%Y-%m-%d %H:%M:%S}'",
    )
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()
    assert history is not None
    metrics = history["operationMetrics"]
    assert (metrics["numTargetRowsUpdated"], metrics["numTargetRowsCopied"]) == ("1", "0"), metrics
    table = spark.read.format("delta").load(path)
    assert table.count() == 21
    one_day = table.where(F.col("window_start") >= F.lit(midnight))
    assert one_day.count() == 1
    assert len(one_day.inputFiles()) == 1 < len(table.inputFiles())


def test_bronze_checkpoints_every_100_commits_and_older_tables_still_append(
    spark: SparkSession, tmp_path: Path
) -> None:
    batch = rows(spark, [("a", "UPSERT", 1, T0, T0, "ci", 1.0, 0, 0)])

    def properties(path: Path) -> dict[str, str]:
        detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
        assert detail is not None
        return dict(detail["properties"])

    append_once(batch, BRONZE_QUAKE_CHANGES, str(tmp_path / "new"), "test", 0)
    assert properties(tmp_path / "new")["delta.checkpointInterval"] == "100"
    # A table an earlier version created (Delta's default interval) takes appends as before.
    batch.write.format("delta").partitionBy("ingest_date").save(str(tmp_path / "old"))
    append_once(batch, BRONZE_QUAKE_CHANGES, str(tmp_path / "old"), "test", 0)
    assert spark.read.format("delta").load(str(tmp_path / "old")).count() == 2
    # The upgrade spark_jobs/README.md gives for such a table.
    spark.sql(
        f"ALTER TABLE delta.`{tmp_path / 'old'}` "
        "SET TBLPROPERTIES ('delta.checkpointInterval' = '100')"
    )
    assert properties(tmp_path / "old")["delta.checkpointInterval"] == "100"


def test_silver_and_late_events_exist_from_their_queries_start(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Their readers (dbt's sources, the validations, the daily DAG) found no table until the
    first batch with data: minutes on silver's default 2-minute trigger."""
    from core.settings import Settings
    from lake.tables import LATE_QUAKE_CHANGES
    from spark_jobs import late_stream, silver_stream

    settings = Settings(state_dir=tmp_path, catalog={"kind": "in-memory"})
    for job in (silver_stream, late_stream):
        job.start(spark, settings, available_now=True).awaitTermination(120)
    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    silver = spark.read.format("delta").load(SILVER_QUAKES.path(settings.lake_uri))
    late = spark.read.format("delta").load(LATE_QUAKE_CHANGES.path(settings.lake_uri))
    # Empty, with the schemas their first MERGE and insert would have given them.
    assert (silver.count(), late.count()) == (0, 0)
    assert silver.schema == transforms.latest_per_entity(bronze).schema
    assert late.schema == bronze.schema
