"""The proof that rebuilding an interval changes no mart, with Delta time travel.

Each mart's version is noted, the interval rebuilt, and the version before
compared with the version after both ways (``EXCEPT ALL``: duplicates count).
A rebuild that committed no new version (an empty MERGE commits nothing) is
reported as such; one that did shows its Delta history lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.settings import Settings
from marts.build import INCREMENTAL_MARTS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass
class MartCheck:
    """One mart before and after the rebuild."""

    name: str
    version_before: int
    version_after: int
    only_before: int  # rows in the old version missing from the new one
    only_after: int  # rows in the new version missing from the old one
    history: list[str] = field(default_factory=list)

    @property
    def new_version(self) -> bool:
        return self.version_after != self.version_before

    @property
    def unchanged(self) -> bool:
        return self.only_before == 0 and self.only_after == 0


def current_version(spark: SparkSession, table: str) -> int:
    """The table's latest Delta version."""
    row = spark.sql(f"DESCRIBE HISTORY {table} LIMIT 1").first()
    assert row is not None
    return int(row["version"])


def history_lines(spark: SparkSession, table: str, after_version: int) -> list[str]:
    """The Delta history of ``table`` after ``after_version``: version, operation, metrics."""
    rows = (
        spark.sql(f"DESCRIBE HISTORY {table}")
        .where(f"version > {after_version}")
        .orderBy("version")
        .collect()
    )
    lines = []
    for row in rows:
        metrics = row["operationMetrics"] or {}
        shown = ", ".join(
            f"{key}={metrics[key]}"
            for key in (
                "numOutputRows",
                "numTargetRowsInserted",
                "numTargetRowsUpdated",
                "numTargetRowsDeleted",
                "numTargetFilesAdded",
                "numTargetFilesRemoved",
                "numFiles",
            )
            if key in metrics
        )
        lines.append(f"v{row['version']} {row['operation']} {shown}")
    return lines


def difference(spark: SparkSession, table: str, left: int, right: int) -> int:
    """Rows of version ``left`` that version ``right`` lacks (``EXCEPT ALL``)."""
    return int(
        spark.sql(
            f"SELECT * FROM {table} VERSION AS OF {left} "
            f"EXCEPT ALL SELECT * FROM {table} VERSION AS OF {right}"
        ).count()
    )


def verify_idempotent(
    spark: SparkSession, settings: Settings, rebuild: Callable[[], None]
) -> list[MartCheck]:
    """Note each mart's version, ``rebuild()``, compare the versions both ways."""
    schema = settings.catalog.marts_schema
    tables = [f"{schema}.{name}" for name in INCREMENTAL_MARTS]
    before = {table: current_version(spark, table) for table in tables}
    rebuild()
    checks = []
    for table in tables:
        after = current_version(spark, table)
        old = before[table]
        checks.append(
            MartCheck(
                name=table,
                version_before=old,
                version_after=after,
                only_before=difference(spark, table, old, after) if after != old else 0,
                only_after=difference(spark, table, after, old) if after != old else 0,
                history=history_lines(spark, table, old),
            )
        )
    return checks
