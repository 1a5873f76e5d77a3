"""The proof that rerunning a day of ``lakehouse_daily`` changes nothing.

Before the rerun, each table the DAG touches has its version noted
(``versions``); after it, every commit the rerun made (its marker in
``userMetadata``) is compared with the version before it, both ways with
``EXCEPT ALL``, and each table's key is checked unique. Commits by the
streaming job in between are not the rerun's and are left alone, so the
proof holds on a lake that keeps receiving data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.intervals import Interval
from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES, SILVER_QUAKES
from lake.time_travel import TableProof, latest_version, prove_unchanged
from marts.profiles import marts_root

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class TouchedTable:
    """A table the daily DAG writes: where, its key, and the rows a run is about."""

    name: str
    path: str
    key: tuple[str, ...]
    where: str | None = None


def touched_tables(settings: Settings, interval: Interval) -> list[TouchedTable]:
    """Every table a run of the daily DAG for ``interval`` commits to."""
    lake, root = settings.lake_uri, marts_root(settings)
    in_interval = f"event_time_ms >= {interval.start_ms} AND event_time_ms < {interval.end_ms}"
    return [
        TouchedTable(
            "lake.quake_changes",
            BRONZE_QUAKE_CHANGES.path(lake),
            ("kafka_topic", "kafka_partition", "kafka_offset"),
            in_interval,
        ),
        TouchedTable("lake.quakes", SILVER_QUAKES.path(lake), ("entity_id",)),
        TouchedTable(
            "marts.fct_quake_revisions", f"{root}/fct_quake_revisions", ("quake_id", "updated_ms")
        ),
        TouchedTable("marts.fct_quakes", f"{root}/fct_quakes", ("quake_id",)),
        TouchedTable(
            "marts.fct_network_activity_daily",
            f"{root}/fct_network_activity_daily",
            ("activity_date", "network_code"),
        ),
        TouchedTable("marts.dim_date", f"{root}/dim_date", ("date_day",)),
        TouchedTable("marts.dim_network", f"{root}/dim_network", ("network_code",)),
        TouchedTable("marts.dim_magnitude_type", f"{root}/dim_magnitude_type", ("magnitude_type",)),
        TouchedTable("marts.dim_region", f"{root}/dim_region", ("fe_region_number",)),
    ]


def versions(spark: SparkSession, tables: list[TouchedTable]) -> dict[str, int]:
    """Each table's newest version, noted before a rerun."""
    return {table.name: latest_version(spark, table.path) for table in tables}


def prove_rerun(
    spark: SparkSession, tables: list[TouchedTable], before: dict[str, int], marker: str
) -> list[TableProof]:
    """Each table's commits by ``marker`` since ``before``, compared with the version before."""
    return [
        prove_unchanged(spark, t.name, t.path, t.key, before[t.name], marker=marker, where=t.where)
        for t in tables
    ]
