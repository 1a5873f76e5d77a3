"""The DataFrame each suite validates, for one interval: pure DataFrame functions.

The callers read the tables (``run.py``) and pass them in, so each frame is
tested with small static inputs. The interval is on event time, like the
daily DAG's: bronze and silver rows whose event time falls in
``[start, end)``, mart rows whose event date does.

Rows changed after the marts' build started cannot be in the marts yet (the
stream keeps writing silver and bronze): the relationship and reconciliation
frames leave them out of both sides, by ingestion time, so a validation never
fails on a race with the stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pyspark.sql import functions as F  # noqa: N812

from core.intervals import Interval
from quality.suites import EVENT_TIME_AHEAD_MS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def _event_time_in(interval: Interval) -> Column:
    return (F.col("event_time_ms") >= F.lit(interval.start_ms)) & (
        F.col("event_time_ms") < F.lit(interval.end_ms)
    )


def _event_date_in(column: str, interval: Interval) -> Column:
    return (F.col(column) >= F.lit(interval.start_date)) & (
        F.col(column) < F.lit(interval.end_date)
    )


def bronze_frame(bronze: DataFrame, interval: Interval) -> DataFrame:
    """Bronze rows of the interval, with how far each event time is ahead of its record."""
    return bronze.where(_event_time_in(interval)).withColumn(
        EVENT_TIME_AHEAD_MS, F.col("event_time_ms") - F.unix_millis(F.col("kafka_timestamp"))
    )


def silver_frame(silver: DataFrame, interval: Interval) -> DataFrame:
    """Silver rows of the interval, with whether the tombstone agrees with the version's op."""
    return silver.where(_event_time_in(interval)).withColumn(
        "tombstone_consistent",
        F.coalesce(F.col("is_deleted") == (F.col("op") == F.lit("DELETE")), F.lit(False)),
    )


def _has(rows: DataFrame, keys: DataFrame, on: list[str], flag: str) -> DataFrame:
    """``rows`` with a boolean ``flag``: whether ``keys`` holds the row's ``on`` columns."""
    marked = keys.select(*on).distinct().withColumn(flag, F.lit(True))
    return rows.join(marked, on=on, how="left").withColumn(
        flag, F.coalesce(F.col(flag), F.lit(False))
    )


def _dimension_flags(facts: DataFrame, dims: dict[str, DataFrame]) -> DataFrame:
    """The facts with one flag per dimension they reference (a null magnitude type is fine)."""
    dates = dims["dim_date"].select(F.col("date_day").alias("event_date"))
    flagged = _has(facts, dates, ["event_date"], "has_dim_date")
    flagged = _has(flagged, dims["dim_network"], ["network_code"], "has_dim_network")
    flagged = _has(flagged, dims["dim_region"], ["fe_region_number"], "has_dim_region")
    flagged = _has(flagged, dims["dim_magnitude_type"], ["magnitude_type"], "_known_mag_type")
    return flagged.withColumn(
        "has_dim_magnitude_type", F.col("magnitude_type").isNull() | F.col("_known_mag_type")
    ).drop("_known_mag_type")


def fct_quakes_frame(
    fct_quakes: DataFrame,
    dims: dict[str, DataFrame],
    silver: DataFrame,
    interval: Interval,
    build_started: datetime,
) -> DataFrame:
    """fct_quakes rows of the interval with a flag per relationship.

    ``has_silver_row``: the quake is in silver and not deleted there, or its
    silver row changed after the build started (the next build catches up).
    """
    facts = fct_quakes.where(_event_date_in("event_date", interval))
    current = silver.select(
        F.col("entity_id").alias("quake_id"),
        (~F.col("is_deleted") | (F.col("ingested_at") >= F.lit(build_started))).alias(
            "has_silver_row"
        ),
    )
    flagged = facts.join(current, on="quake_id", how="left").withColumn(
        "has_silver_row", F.coalesce(F.col("has_silver_row"), F.lit(False))
    )
    return _dimension_flags(flagged, dims)


def fct_revisions_frame(
    fct_revisions: DataFrame, dims: dict[str, DataFrame], bronze: DataFrame, interval: Interval
) -> DataFrame:
    """fct_quake_revisions rows of the interval with a flag per relationship."""
    facts = fct_revisions.where(_event_date_in("event_date", interval))
    versions = bronze.where(_event_time_in(interval)).select(
        F.col("entity_id").alias("quake_id"), "updated_ms"
    )
    return _dimension_flags(
        _has(facts, versions, ["quake_id", "updated_ms"], "has_bronze_row"), dims
    )


def reconciliation_frame(
    fct_quakes: DataFrame,
    fct_revisions: DataFrame,
    silver: DataFrame,
    bronze: DataFrame,
    interval: Interval,
    *,
    build_started: datetime,
) -> DataFrame:
    """One row: the interval's quakes and versions in silver/bronze and in the marts.

    Only what existed, unchanged, when the build started is counted on either
    side: silver rows ingested before it, bronze versions first ingested
    before it.
    """
    before = F.lit(build_started)
    settled = silver.where(_event_time_in(interval) & (F.col("ingested_at") < before)).select(
        F.col("entity_id").alias("quake_id"), "is_deleted"
    )
    silver_quakes = settled.where(~F.col("is_deleted")).select("quake_id")
    mart_quakes = (
        fct_quakes.where(_event_date_in("event_date", interval))
        .select("quake_id")
        .join(settled.select("quake_id"), on="quake_id", how="inner")
    )
    versions = (
        bronze.where(_event_time_in(interval))
        .groupBy(F.col("entity_id").alias("quake_id"), "updated_ms")
        .agg(F.min("ingested_at").alias("first_ingested_at"))
        .where(F.col("first_ingested_at") < before)
        .select("quake_id", "updated_ms")
    )
    mart_revisions = (
        fct_revisions.where(_event_date_in("event_date", interval))
        .select("quake_id", "updated_ms")
        .join(versions, on=["quake_id", "updated_ms"], how="inner")
    )
    counts = [
        silver_quakes.agg(F.count(F.lit(1)).alias("silver_quakes")),
        mart_quakes.agg(F.count(F.lit(1)).alias("mart_quakes")),
        versions.agg(F.count(F.lit(1)).alias("bronze_versions")),
        mart_revisions.agg(F.count(F.lit(1)).alias("mart_revisions")),
    ]
    row = counts[0]
    for other in counts[1:]:
        row = row.crossJoin(other)
    return row
