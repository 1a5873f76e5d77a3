"""The DataFrames the suites validate, on small static inputs."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from core.intervals import Interval
from quality import frames

from .lake_rows import bronze, quake, silver

DAY = Interval.of_day(date(2019, 2, 15))
HOUR_MS = 3_600_000


def test_bronze_frame_keeps_the_interval_and_measures_event_times_ahead(
    spark: SparkSession,
) -> None:
    rows = bronze(
        spark,
        [quake("in", 5 * HOUR_MS), quake("before", -HOUR_MS), quake("after", 25 * HOUR_MS)],
    )
    frame = frames.bronze_frame(rows, DAY).collect()
    assert [r.entity_id for r in frame] == ["in"]
    # The Kafka timestamp is days after the event: far behind, not ahead.
    assert frame[0].event_time_ahead_ms < 0


def test_silver_frame_checks_tombstones_against_the_op(spark: SparkSession) -> None:
    rows = bronze(spark, [quake("a", HOUR_MS), quake("b", HOUR_MS, op="DELETE")])
    consistent = {
        r.entity_id: r.tombstone_consistent
        for r in frames.silver_frame(silver(rows), DAY).collect()
    }
    assert consistent == {"a": True, "b": True}
    broken = silver(rows).withColumn("is_deleted", F.col("op") == "UPSERT")
    assert {r.tombstone_consistent for r in frames.silver_frame(broken, DAY).collect()} == {False}


def _facts(spark: SparkSession, rows: list[tuple[str, int, str, str | None, int]]) -> DataFrame:
    return spark.createDataFrame(
        [(q, u, date(2019, 2, 15), n, m, r) for q, u, n, m, r in rows],
        "quake_id string, updated_ms long, event_date date, network_code string, "
        "magnitude_type string, fe_region_number int",
    )


def _dims(spark: SparkSession) -> dict[str, DataFrame]:
    return {
        "dim_date": spark.createDataFrame([(date(2019, 2, 15),)], "date_day date"),
        "dim_network": spark.createDataFrame([("ci",)], "network_code string"),
        "dim_magnitude_type": spark.createDataFrame([("ml",)], "magnitude_type string"),
        "dim_region": spark.createDataFrame([(7,)], "fe_region_number int"),
    }


def test_fact_rows_get_one_flag_per_relationship(spark: SparkSession) -> None:
    rows = bronze(
        spark,
        [quake("ok", HOUR_MS), quake("gone", HOUR_MS, op="DELETE"), quake("late", HOUR_MS)],
    )
    current = silver(rows)
    build_started = datetime(2019, 2, 18, 13, 0, tzinfo=UTC)  # after the rows' ingestion
    facts = _facts(
        spark,
        [
            ("ok", 1, "ci", "ml", 7),
            ("gone", 1, "ci", None, 7),  # deleted in silver before the build: must not be here
            ("late", 1, "xx", "zz", 99),  # unknown network, magnitude type and region
            ("nowhere", 1, "ci", "ml", 7),  # not in silver at all
        ],
    )
    flagged = {
        r.quake_id: r
        for r in frames.fct_quakes_frame(facts, _dims(spark), current, DAY, build_started).collect()
    }
    assert flagged["ok"].has_silver_row and flagged["ok"].has_dim_network
    assert not flagged["gone"].has_silver_row
    assert flagged["gone"].has_dim_magnitude_type  # a null magnitude type is fine
    assert not flagged["nowhere"].has_silver_row
    late = flagged["late"]
    assert (late.has_dim_network, late.has_dim_magnitude_type, late.has_dim_region) == (
        False,
        False,
        False,
    )
    assert late.has_dim_date
    # A silver row changed after the build started: the next build catches up, no failure.
    before_ingest = datetime(2019, 2, 18, 11, 0, tzinfo=UTC)
    later = frames.fct_quakes_frame(facts, _dims(spark), current, DAY, before_ingest).collect()
    assert {r.quake_id for r in later if r.has_silver_row} == {"ok", "gone", "late"}


def test_reconciliation_counts_what_existed_when_the_build_started(spark: SparkSession) -> None:
    rows = bronze(
        spark,
        [
            quake("a", HOUR_MS),
            quake("a", HOUR_MS, updated_after_ms=120_000),  # a revision: two versions
            quake("b", 2 * HOUR_MS),
            quake("c", 3 * HOUR_MS, op="DELETE"),
            quake("other_day", 30 * HOUR_MS),
        ],
    )
    current = silver(rows)
    revisions = spark.createDataFrame(
        [
            (r.entity_id, r.updated_ms, date(2019, 2, 15))
            for r in rows.collect()
            if r.entity_id != "other_day"
        ],
        "quake_id string, updated_ms long, event_date date",
    )
    quakes = spark.createDataFrame(
        [("a", date(2019, 2, 15)), ("b", date(2019, 2, 15))], "quake_id string, event_date date"
    )
    started = datetime(2019, 2, 18, 13, 0, tzinfo=UTC)
    row = frames.reconciliation_frame(
        quakes, revisions, current, rows, DAY, build_started=started
    ).first()
    assert row is not None
    assert (row.silver_quakes, row.mart_quakes) == (2, 2)
    assert (row.bronze_versions, row.mart_revisions) == (4, 4)
    # A quake missing from the marts shows on one side only.
    row = frames.reconciliation_frame(
        quakes.where("quake_id = 'a'"), revisions, current, rows, DAY, build_started=started
    ).first()
    assert row is not None and (row.silver_quakes, row.mart_quakes) == (2, 1)
    # Everything ingested after the build started is left out of both sides.
    early = datetime(2019, 2, 18, 11, 0, tzinfo=UTC)
    row = frames.reconciliation_frame(
        quakes, revisions, current, rows, DAY, build_started=early
    ).first()
    assert row is not None and tuple(row) == (0, 0, 0, 0)
