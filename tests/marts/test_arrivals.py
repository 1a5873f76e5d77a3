"""The event dates a run re-merges beyond its lookback (marts/arrivals.py), pure parts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pyspark.sql import SparkSession

from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES
from marts.arrivals import (
    CURRENT_STATE_MART,
    MAX_RANGES,
    arrived_event_dates,
    covered_dates,
    date_ranges,
)
from marts.profiles import marts_root

D = date(2026, 1, 10)


def test_the_covered_dates_are_the_interval_and_its_lookback() -> None:
    window = {"start_date": "2026-01-10", "end_date": "2026-01-12", "lookback_days": 3}
    assert covered_dates(window) == (date(2026, 1, 7), date(2026, 1, 12))


def test_days_inside_the_lookback_or_the_interval_are_left_out() -> None:
    covered = (date(2026, 1, 7), date(2026, 1, 11))
    assert date_ranges([date(2026, 1, 7), date(2026, 1, 10), date(2026, 1, 8)], covered) == []


def test_consecutive_days_join_into_one_range_and_gaps_split_them() -> None:
    covered = (date(2026, 1, 7), date(2026, 1, 11))
    days = [date(2025, 12, 1), date(2025, 12, 3), date(2025, 12, 2), date(2025, 12, 20)]
    assert date_ranges(days + days, covered) == [
        (date(2025, 12, 1), date(2025, 12, 4)),
        (date(2025, 12, 20), date(2025, 12, 21)),
    ]


def test_a_day_after_the_interval_is_a_range_too() -> None:
    """A version stamped a little ahead of its arrival (up to the stream's tolerance)."""
    covered = (date(2026, 1, 7), date(2026, 1, 11))
    assert date_ranges([date(2026, 1, 11)], covered) == [(date(2026, 1, 11), date(2026, 1, 12))]


def test_too_many_ranges_become_one_spanning_them_all() -> None:
    """A replay that ingested years of history today: fewer clauses, never fewer days."""
    covered = (D, D + timedelta(days=1))
    days = [D - timedelta(days=2 * i + 10) for i in range(MAX_RANGES + 1)]
    assert date_ranges(days, covered) == [(min(days), max(days) + timedelta(days=1))]
    assert len(date_ranges(days[:MAX_RANGES], covered)) == MAX_RANGES


def _ms(day: date, hour: int = 12) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp() * 1000)


def test_the_arrived_dates_are_read_from_bronze_and_the_current_state(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A real Delta bronze partitioned by ingest_date and a real fct_quakes: the event dates
    of the interval's arrivals, and the date a revised quake's row is on (moved across
    midnight by its revision); rows that arrived outside the interval count for nothing."""
    settings = Settings(state_dir=tmp_path / "state", lake_root=str(tmp_path / "lake"))
    today, old, older, moved_from = D, date(2025, 11, 3), date(2025, 10, 1), date(2025, 9, 9)
    bronze = [
        ("q-today", _ms(today), today),
        ("q-old", _ms(old), today),  # a revision weeks late
        ("q-moved", _ms(moved_from + timedelta(days=1), 0), today),  # its new time: next day
        ("q-tombstone", None, today),
        ("q-earlier", _ms(older), today - timedelta(days=1)),  # arrived the day before
    ]
    (
        spark.createDataFrame(bronze, "entity_id string, event_time_ms long, ingest_date date")
        .write.format("delta")
        .partitionBy("ingest_date")
        .save(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    )
    interval = (today, today + timedelta(days=1))
    # A first build: no fct_quakes yet.
    new_date = moved_from + timedelta(days=1)
    assert sorted(arrived_event_dates(spark, settings, interval)) == [new_date, old, today]
    quakes = [("q-moved", moved_from), ("q-earlier", older), ("q-other", date(2025, 8, 1))]
    (
        spark.createDataFrame(quakes, "quake_id string, event_date date")
        .write.format("delta")
        .save(f"{marts_root(settings)}/{CURRENT_STATE_MART}")
    )
    assert sorted(arrived_event_dates(spark, settings, interval)) == [
        moved_from,
        new_date,
        old,
        today,
    ]
