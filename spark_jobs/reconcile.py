"""Compare the live tables with a replay's side tables and list every difference.

For windows: rows are matched on (window_start, window_end, net); a window
present on one side only, or with a different count, max, mean or number of
distinct entities, is a difference. ``last_produced_at_ms`` is a latency
instrument, not an aggregate, and is not compared. Windows that end after
``closed_before`` (still open to on-time events) can be left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pyspark.sql import functions as F  # noqa: N812

from lake.tables import QUAKE_WINDOWS_1H, QUAKE_WINDOWS_1M, SILVER_QUAKES, Table
from spark_jobs import transforms
from spark_jobs.replay import replay_table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from core.settings import Settings

WINDOW_TABLES = (QUAKE_WINDOWS_1M, QUAKE_WINDOWS_1H)
WINDOW_VALUES = ("event_count", "max_mag", "mean_mag", "distinct_entities")
SILVER_VALUES = ("op", "updated_ms", "event_time_ms", "mag", "is_deleted")


@dataclass(frozen=True)
class Difference:
    """One row that differs between live and replay."""

    table: str
    key: dict[str, object]
    live: dict[str, object] | None
    replay: dict[str, object] | None


def compare(
    live: DataFrame, replayed: DataFrame, key: tuple[str, ...], values: tuple[str, ...]
) -> DataFrame:
    """Rows of a full outer join on ``key`` where a side is missing or a value differs."""
    left = live.select(
        *key, *[F.col(v).alias(f"live_{v}") for v in values], F.lit(True).alias("_l")
    )
    right = replayed.select(
        *key, *[F.col(v).alias(f"replay_{v}") for v in values], F.lit(True).alias("_r")
    )
    joined = left.join(right, [left[k].eqNullSafe(right[k]) for k in key], "full_outer").select(
        *[F.coalesce(left[k], right[k]).alias(k) for k in key],
        *[c for c in left.columns if c.startswith("live_") or c == "_l"],
        *[c for c in right.columns if c.startswith("replay_") or c == "_r"],
    )
    differs = F.col("_l").isNull() | F.col("_r").isNull()
    for value in values:
        live_value, replay_value = F.col(f"live_{value}"), F.col(f"replay_{value}")
        if value == "mean_mag":
            # Means summed in another order may differ in the last bits.
            same = (live_value.isNull() & replay_value.isNull()) | (
                F.abs(live_value - replay_value) <= 1e-9
            )
            differs = differs | ~F.coalesce(same, F.lit(False))
        else:
            differs = differs | ~live_value.eqNullSafe(replay_value)
    return joined.where(differs)


def _load(spark: SparkSession, table: Table, lake_root: str) -> DataFrame:
    return spark.read.format("delta").load(table.path(lake_root))


def reconcile(
    spark: SparkSession,
    settings: Settings,
    *,
    window_start_from: datetime | None = None,
    closed_before: datetime | None = None,
    entities: DataFrame | None = None,
) -> list[Difference]:
    """Every difference between the live and the replayed silver and window tables."""
    differences: list[Difference] = []
    for table in WINDOW_TABLES:
        live = _load(spark, table, settings.lake_uri)
        replayed = _load(spark, replay_table(table), settings.lake_uri)
        if window_start_from is not None:
            live = live.where(F.col("window_start") >= F.lit(window_start_from))
            replayed = replayed.where(F.col("window_start") >= F.lit(window_start_from))
        if closed_before is not None:
            live = live.where(F.col("window_end") <= F.lit(closed_before))
            replayed = replayed.where(F.col("window_end") <= F.lit(closed_before))
        rows = compare(live, replayed, transforms.WINDOW_KEY, WINDOW_VALUES).collect()
        differences.extend(as_differences(table.name, rows, transforms.WINDOW_KEY))
    live_silver = _load(spark, SILVER_QUAKES, settings.lake_uri)
    replay_silver = _load(spark, replay_table(SILVER_QUAKES), settings.lake_uri)
    if entities is not None:
        live_silver = live_silver.join(entities, "entity_id", "left_semi")
        replay_silver = replay_silver.join(entities, "entity_id", "left_semi")
    rows = compare(live_silver, replay_silver, ("entity_id",), SILVER_VALUES).collect()
    differences.extend(as_differences(SILVER_QUAKES.name, rows, ("entity_id",)))
    return differences


def as_differences(table: str, rows: list[object], key: tuple[str, ...]) -> list[Difference]:
    """Rows of ``compare`` as differences (their live_* and replay_* columns split)."""
    result = []
    for row in rows:
        data = row.asDict()  # type: ignore[attr-defined]
        result.append(
            Difference(
                table=table,
                key={k: data[k] for k in key},
                live={k[5:]: v for k, v in data.items() if k.startswith("live_")}
                if data.get("_l")
                else None,
                replay={k[7:]: v for k, v in data.items() if k.startswith("replay_")}
                if data.get("_r")
                else None,
            )
        )
    return result
