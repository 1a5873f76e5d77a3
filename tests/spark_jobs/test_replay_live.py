"""A bounded replay into the live tables leaves them equal to a full rebuild (Spark + Delta).

Bronze gets two ingestion batches whose events share minutes and hours; the
live tables are built from the first, then a replay bounded to the second
batch's ingestion time updates them. Every window must then hold all of its
events, not only the replayed ones, and silver the newest version of each
entity: exactly what a full rebuild into the side tables computes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES, QUAKE_WINDOWS_1H, QUAKE_WINDOWS_1M, SILVER_QUAKES
from spark_jobs import reconcile, replay
from spark_jobs.bronze_stream import empty_bronze
from spark_jobs.delta_io import append_once

T0 = datetime(2026, 11, 26, 12, 0, 0)
MINUTE = timedelta(minutes=1)
LATENESS_MS = 10 * 60_000


def bronze_rows(
    spark: SparkSession, ingested_at: datetime, events: list[dict[str, Any]]
) -> DataFrame:
    schema = empty_bronze(spark).schema
    rows = []
    for offset, event in enumerate(events):
        values: dict[str, Any] = dict.fromkeys(schema.fieldNames())
        kafka_ts = event.pop("kafka_ts", T0 + 2 * MINUTE)
        values.update(
            op="UPSERT",
            source="test",
            poll_id="p",
            produced_at_ms=int(kafka_ts.timestamp() * 1000),
            kafka_topic="t",
            kafka_partition=0,
            kafka_offset=event.pop("offset", offset),
            kafka_timestamp=kafka_ts,
            schema_id=1,
            ingested_at=ingested_at,
            ingest_date=ingested_at.date(),
        )
        values.update(event)
        values["is_late"] = values["event_time_ms"] < int(kafka_ts.timestamp() * 1000) - LATENESS_MS
        rows.append(Row(**values))
    return spark.createDataFrame(rows, schema)


def event(
    entity: str, updated: int, at: datetime, mag: float, net: str, **more: Any
) -> dict[str, Any]:
    return {
        "entity_id": entity,
        "updated_ms": updated,
        "event_time_ms": int(at.timestamp() * 1000),
        "mag": mag,
        "net": net,
        **more,
    }


def test_bounded_live_replay_equals_a_full_rebuild(spark: SparkSession, tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", lake_root=str(tmp_path / "lake"))
    bronze_path = BRONZE_QUAKE_CHANGES.path(settings.lake_uri)
    t_a, t_b = T0 + 5 * MINUTE, T0 + 70 * MINUTE
    first = bronze_rows(
        spark,
        t_a,
        [
            event("a", 1, T0, 1.0, "ci"),
            event("b", 1, T0 + timedelta(seconds=10), 2.0, "ci"),  # same minute as "a"
            event("c", 1, T0 + 3 * MINUTE, 3.0, "us"),
            event("d", 1, T0 + 65 * MINUTE, 1.5, "ci", kafka_ts=T0 + 66 * MINUTE),
        ],
    )
    append_once(first, BRONZE_QUAKE_CHANGES, bronze_path, "test.bronze", 0)
    replay.replay_bronze(spark, settings, None, None, to_live=True)

    second = bronze_rows(
        spark,
        t_b,
        [
            # A new event in a minute "a" and "b" are already in: the window must keep them.
            event("e", 1, T0 + timedelta(seconds=20), 4.0, "ci", offset=10),
            # A newer version of "a", and an older one of "c" arriving after it.
            event("a", 2, T0, 1.2, "ci", offset=11),
            event("c", 0, T0 + 3 * MINUTE, 9.0, "us", offset=12),
            # An event in the next hour: every 1-hour window holding its minute changes.
            event("f", 1, T0 + 66 * MINUTE, 2.5, "ci", offset=13, kafka_ts=T0 + 67 * MINUTE),
            # Late: kept in bronze, left out of every window.
            event("g", 1, T0 - 30 * MINUTE, 5.0, "ci", offset=14),
        ],
    )
    append_once(second, BRONZE_QUAKE_CHANGES, bronze_path, "test.bronze", 1)
    counts = replay.replay_bronze(spark, settings, t_b, t_b + MINUTE, to_live=True)
    assert counts["bronze"] == 5

    # The full rebuild, into the side tables, from all of bronze.
    replay.replay_bronze(spark, settings, None, None)
    assert reconcile.reconcile(spark, settings) == []

    minutes = spark.read.format("delta").load(QUAKE_WINDOWS_1M.path(settings.lake_uri))
    first_minute = minutes.where(
        (F.col("window_start") == F.lit(T0)) & (F.col("net") == "ci")
    ).first()
    assert first_minute is not None and first_minute.event_count == 4  # a v1, a v2, b, e
    assert minutes.agg(F.sum("event_count")).first()[0] == 8  # every on-time version once
    hours = spark.read.format("delta").load(QUAKE_WINDOWS_1H.path(settings.lake_uri))
    assert hours.agg(F.sum("event_count")).first()[0] == 8 * 12  # 12 sliding hours each
    silver = {
        r.entity_id: r
        for r in spark.read.format("delta").load(SILVER_QUAKES.path(settings.lake_uri)).collect()
    }
    assert (silver["a"].updated_ms, silver["c"].updated_ms, silver["c"].mag) == (2, 1, 3.0)
    assert set(silver) == {"a", "b", "c", "d", "e", "f", "g"}


def test_a_range_of_late_events_only_replays_and_reconciles_with_empty_windows(
    spark: SparkSession, tmp_path: Path
) -> None:
    """No event of the range is on time, so no window: the replay still leaves both window
    tables (empty), and reconciling finds no difference instead of a missing path (the
    replay DAG failed so on the simulator's 2019 data, all of it late)."""
    settings = Settings(state_dir=tmp_path / "state", lake_root=str(tmp_path / "lake"))
    late = bronze_rows(spark, T0, [event("g", 1, T0 - 30 * MINUTE, 5.0, "ci")])
    append_once(late, BRONZE_QUAKE_CHANGES, BRONZE_QUAKE_CHANGES.path(settings.lake_uri), "b", 0)
    replay.replay_bronze(spark, settings, None, None, to_live=True)
    counts = replay.replay_bronze(spark, settings, None, None)
    assert counts[QUAKE_WINDOWS_1M.name] == counts[QUAKE_WINDOWS_1H.name] == 0
    for table in (QUAKE_WINDOWS_1M, QUAKE_WINDOWS_1H):
        side = spark.read.format("delta").load(replay.replay_table(table).path(settings.lake_uri))
        assert side.count() == 0 and "event_count" in side.columns
    assert reconcile.reconcile(spark, settings) == []
