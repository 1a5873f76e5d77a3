"""A catalog name whose table's files went away: listed, not fatal, and re-pointed.

The fault test runs the stream on a lake of its own and registers the lake's names
there; once its temporary lake was deleted, ``streamhouse catalog tables`` failed on
DELTA_PATH_DOES_NOT_EXIST and ``register_table`` could no longer move the names back.
Spark's in-memory catalog here, the same calls as on the metastore.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pyspark.sql import SparkSession

from core.settings import Settings
from lake.tables import SILVER_QUAKES
from spark_jobs.catalog import (
    MISSING_LOCATION,
    describe_tables,
    ensure_schemas,
    register_table,
    registered_location,
)
from spark_jobs.delta_io import ensure_table


def _lake(root: Path) -> Settings:
    return Settings(
        lake_root=str(root),
        catalog={
            "kind": "in-memory",
            "lake_schema": "unit_catalog_lake",
            "marts_schema": "unit_catalog_marts",
        },
    )


def test_a_name_whose_files_went_away_is_listed_and_registered_again(
    spark: SparkSession, tmp_path: Path
) -> None:
    gone, kept = _lake(tmp_path / "gone"), _lake(tmp_path / "kept")
    like = spark.createDataFrame([("q1", 1)], "entity_id string, updated_ms long")
    for settings in (gone, kept):
        ensure_table(spark, SILVER_QUAKES, SILVER_QUAKES.path(settings.lake_uri), like)
    ensure_schemas(spark, gone)
    assert register_table(spark, gone, SILVER_QUAKES)
    name = "unit_catalog_lake.quakes"

    shutil.rmtree(SILVER_QUAKES.path(gone.lake_uri).removeprefix("file:"))
    assert registered_location(spark, name) is None
    listed = {t.name: t for t in describe_tables(spark, gone, count=True)}
    assert (listed[name].location, listed[name].rows) == (MISSING_LOCATION, None)

    assert register_table(spark, kept, SILVER_QUAKES)
    location = registered_location(spark, name)
    assert location is not None
    assert location.removeprefix("file:").rstrip("/") == SILVER_QUAKES.path(
        kept.lake_uri
    ).removeprefix("file:").rstrip("/")
    assert spark.table(name).count() == 0
