"""What a marts build delivered (marts/delivery.py): its commits, its new versions, their
latency from produced-at, on real Delta tables."""

from __future__ import annotations

import math
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES
from marts import delivery
from marts.profiles import marts_root

D = date(2026, 1, 10)


def test_a_merge_wrote_its_inserted_and_updated_rows_a_write_its_output() -> None:
    merge = {"numTargetRowsInserted": "3", "numTargetRowsUpdated": "40", "numOutputRows": "43"}
    assert delivery.rows_written(merge) == 43
    assert delivery.rows_written({"numOutputRows": "1304", "numFiles": "2"}) == 1304
    assert delivery.rows_written({}) == 0


def test_maintenance_commits_are_not_data_commits_and_the_rest_come_oldest_first() -> None:
    history = [
        (7, "OPTIMIZE", 3_000, {"numAddedFiles": "1"}),
        (6, "MERGE", 2_000, {"numTargetRowsInserted": "2", "numTargetRowsUpdated": "1"}),
        (8, "VACUUM START", 4_000, {}),
        (9, "VACUUM END", 4_100, {}),
    ]
    assert delivery.data_commits(history) == [delivery.DataCommit(6, "MERGE", 2_000, 3)]


def test_an_incremental_build_merges_its_interval_its_lookback_and_the_revised_ranges() -> None:
    window = {
        "start_date": "2026-01-10",
        "end_date": "2026-01-11",
        "lookback_days": 3,
        "revised_ranges": [["2025-11-03", "2025-11-05"]],
    }
    assert delivery.merged_ranges(window) == [
        (date(2026, 1, 7), date(2026, 1, 11)),
        (date(2025, 11, 3), date(2025, 11, 5)),
    ]


def _ms(day: date, hour: int = 12) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp() * 1000)


def _write_bronze(
    spark: SparkSession, settings: Settings, rows: list[tuple[str, int, int]]
) -> None:
    """Bronze rows (entity_id, updated_ms, produced_at_ms), ingested on D."""
    (
        spark.createDataFrame(
            [(e, u, p, D) for e, u, p in rows],
            "entity_id string, updated_ms long, produced_at_ms long, ingest_date date",
        )
        .write.format("delta")
        .mode("append")
        .partitionBy("ingest_date")
        .save(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    )


def _write_mart(
    spark: SparkSession, path: str, rows: list[tuple[str, int, date]], mode: str
) -> None:
    (
        spark.createDataFrame(rows, "quake_id string, updated_ms long, event_date date")
        .write.format("delta")
        .mode(mode)
        .partitionBy("event_date")
        .save(path)
    )


def test_the_versions_a_build_delivered_and_their_latency_from_produced_at(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A first build, then an incremental one that adds two versions in its dates and
    rewrites an old one: only the new versions count, each from its first delivery."""
    settings = Settings(state_dir=tmp_path / "state", lake_root=str(tmp_path / "lake"))
    path = f"{marts_root(settings)}/fct_quake_revisions"
    now_ms = int(time.time() * 1000)
    produced = {"a": now_ms - 100_000, "b": now_ms - 60_000, "c": now_ms - 20_000}
    _write_bronze(spark, settings, [("a", 1, produced["a"])])
    assert delivery.versions_before(spark, settings) == {
        "fct_quake_revisions": None,
        "fct_quakes": None,
    }
    _write_mart(spark, path, [("a", 1, D)], "overwrite")
    first = delivery.measure(spark, settings, "fct_quake_revisions", None, None)
    assert first is not None and first.versions == 1 and first.rows_written == 1
    assert first.newest_produced_ms == produced["a"]

    before = delivery.versions_before(spark, settings)["fct_quake_revisions"]
    assert before == 0
    # b twice in bronze (a re-delivery, produced later): its first delivery counts.
    _write_bronze(
        spark,
        settings,
        [("b", 2, produced["b"]), ("b", 2, produced["b"] + 30_000), ("c", 3, produced["c"])],
    )
    _write_mart(spark, path, [("b", 2, D), ("c", 3, D)], "append")
    spark.sql(f"OPTIMIZE delta.`{path}`")  # a post-hook's commit: not a data commit
    ranges = [(D, date(2026, 1, 11))]
    build = delivery.measure(spark, settings, "fct_quake_revisions", before, ranges)
    assert build is not None
    assert build.versions == 2 and build.rows_written == 2
    assert build.newest_produced_ms == produced["c"]
    committed = build.committed_ms
    expected = sorted((committed - produced[k]) / 1000 for k in ("b", "c"))
    assert build.latency_s[0.5] == pytest.approx(expected[0])
    assert build.latency_s[0.99] == pytest.approx(expected[1])
    assert "2 new versions" in build.line()

    # A build that commits nothing delivered nothing; one that rewrote its rows, no version.
    assert delivery.measure(spark, settings, "fct_quake_revisions", before + 2, ranges) is None
    _write_mart(spark, path, [("a", 1, D), ("b", 2, D), ("c", 3, D)], "overwrite")
    same = delivery.measure(spark, settings, "fct_quake_revisions", before + 2, ranges)
    assert same is not None and same.versions == 0 and same.rows_written == 3
    assert all(math.isnan(v) for v in same.latency_s.values())
    assert "no new version" in same.line()
    # Nothing in the build's dates: the newest data is looked up in the whole mart.
    elsewhere = [(date(2026, 2, 1), date(2026, 2, 2))]
    empty = delivery.measure(spark, settings, "fct_quake_revisions", before + 2, elsewhere)
    assert empty is not None and empty.newest_produced_ms == produced["c"]
