"""Seeds are loaded when their CSV changed, not on every build.

dbt reloads every seed on every ``dbt build`` (DROP, CREATE, INSERT ... VALUES
in batches: 17 s for the Flinn-Engdahl grid here) and commits new versions of
unchanged tables. Each seed table records the SHA-256 of the CSV it was loaded
from in a table property; a build loads only the seeds whose CSV differs, and
excludes the others. The record lives in the catalog, beside the table, so
every process and machine that shares the metastore agrees on it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Table property holding the SHA-256 of the CSV a seed table was loaded from.
SEED_CHECKSUM_PROPERTY = "streamhouse.seed_sha256"


def seed_checksums(project_dir: Path) -> dict[str, str]:
    """Seed name -> SHA-256 of its CSV, for every seed of the project."""
    return {
        path.stem: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((project_dir / "seeds").glob("*.csv"))
    }


def recorded_property(spark: SparkSession, table: str, name: str) -> str | None:
    """The table property ``name`` of ``table``; None when the table or the property is missing.

    One statement: a table that is missing (or unreadable) fails it, and a property of a
    table that cannot be read is as good as missing (what it records is rebuilt).
    """
    from pyspark.errors import AnalysisException

    try:
        detail = spark.sql(f"DESCRIBE DETAIL {table}").first()
    except AnalysisException:  # TABLE_OR_VIEW_NOT_FOUND, DELTA_PATH_DOES_NOT_EXIST
        return None
    properties = (detail["properties"] if detail is not None else None) or {}
    value = properties.get(name)
    return str(value) if value is not None else None


def stale_seeds(spark: SparkSession, settings: Settings, checksums: dict[str, str]) -> list[str]:
    """The seeds whose table is missing or was loaded from another CSV."""
    schema = settings.catalog.marts_schema
    return [
        name
        for name, checksum in checksums.items()
        if recorded_property(spark, f"{schema}.{name}", SEED_CHECKSUM_PROPERTY) != checksum
    ]


def mark_loaded(
    spark: SparkSession, settings: Settings, names: list[str], checksums: dict[str, str]
) -> None:
    """Record on each seed table the checksum of the CSV just loaded into it."""
    schema = settings.catalog.marts_schema
    for name in names:
        spark.sql(
            f"ALTER TABLE {schema}.{name} SET TBLPROPERTIES "
            f"('{SEED_CHECKSUM_PROPERTY}' = '{checksums[name]}')"
        )
