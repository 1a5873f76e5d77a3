"""The event dates an incremental run re-merges beyond its lookback: those of versions that
arrived in its interval.

A run over ``[start, end)`` re-merges the event dates ``[start - lookback_days, end)``, so
a revision arriving within the lookback lands in its row. USGS revises some events weeks
later (a review, a relocated epicentre, a delete); such a version reaches bronze on the
day it arrives, in that day's ``ingest_date`` partition, with an event date long before
the lookback. Without more, it would reach the marts only at the next full refresh.

``with_revised_ranges`` reads the distinct event dates of bronze's rows ingested in
``[start, end)`` (a scan of those partitions only) and the dates ``fct_quakes`` holds
those quakes on (a revision can move a quake across midnight; two columns of a table of
one row per quake). It keeps those outside the lookback and passes them to dbt as
``revised_ranges``: date ranges ``[first, last)``, consecutive days joined, that
``macros/interval.sql`` adds to the run's filters and MERGE predicates. For a run over
past days (a backfill) they are the dates whose versions arrived on those days. A replay
that ingests years of history in one day gives many ranges, so past ``MAX_RANGES`` they
are joined into one range (reading more, never less).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES
from marts.profiles import marts_root

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The mart keyed by quake alone (one row per quake, on the date of its newest version).
CURRENT_STATE_MART = "fct_quakes"
#: More ranges than this are joined into one: each is a clause of every filter and MERGE.
MAX_RANGES = 32

DateRange = tuple[date, date]


def date_ranges(days: Iterable[date], covered: DateRange) -> list[DateRange]:
    """The days outside ``covered`` ([first, last)) as ranges [first, last) of consecutive
    days, in order; more than ``MAX_RANGES`` become the one range spanning them."""
    outside = sorted({d for d in days if not covered[0] <= d < covered[1]})
    ranges: list[DateRange] = []
    for day in outside:
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + timedelta(days=1))
        else:
            ranges.append((day, day + timedelta(days=1)))
    if len(ranges) > MAX_RANGES:
        return [(ranges[0][0], ranges[-1][1])]
    return ranges


def covered_dates(window: dict[str, Any]) -> DateRange:
    """The event dates a run over ``window`` (``profiles.interval_vars``) covers by itself:
    [start - lookback_days, end)."""
    start = date.fromisoformat(window["start_date"])
    lookback = timedelta(days=int(window["lookback_days"]))
    return start - lookback, date.fromisoformat(window["end_date"])


def arrived_event_dates(spark: SparkSession, settings: Settings, arrived: DateRange) -> list[date]:
    """The event dates (UTC) of bronze's rows ingested in ``arrived`` ([first, last)), and
    the dates where ``fct_quakes`` holds the quakes they revise: a revision may move a
    quake's event time to another UTC date, and its MERGE replaces the old row only if
    the old date is in the run."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F  # noqa: N812

    first, last = arrived
    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    rows = bronze.where(
        (F.col("ingest_date") >= F.lit(first))
        & (F.col("ingest_date") < F.lit(last))
        & F.col("event_time_ms").isNotNull()
    )
    dates = rows.select(F.to_date(F.timestamp_millis("event_time_ms")).alias("event_date"))
    try:
        quakes = spark.read.format("delta").load(f"{marts_root(settings)}/{CURRENT_STATE_MART}")
        quakes.schema  # noqa: B018 - resolves the table: AnalysisException when it is not there
    except AnalysisException:
        pass  # a first build: no row to move
    else:
        moved = quakes.join(
            rows.select(F.col("entity_id").alias("quake_id")).distinct(), "quake_id", "left_semi"
        ).select("event_date")
        dates = dates.union(moved)
    return [row.event_date for row in dates.distinct().collect()]


def with_revised_ranges(
    spark: SparkSession, settings: Settings, window: dict[str, Any]
) -> dict[str, Any]:
    """``window`` plus ``revised_ranges``: the event dates beyond its lookback that received
    versions arriving in its interval."""
    arrived = (date.fromisoformat(window["start_date"]), date.fromisoformat(window["end_date"]))
    days = arrived_event_dates(spark, settings, arrived)
    ranges = date_ranges(days, covered_dates(window))
    return {**window, "revised_ranges": [[a.isoformat(), b.isoformat()] for a, b in ranges]}
