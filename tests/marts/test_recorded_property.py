"""What a build records on its tables (seed checksums, static fingerprints), read back in one
statement per table (marts/seeds.py), on real Delta tables in Spark's in-memory catalog."""

from __future__ import annotations

import shutil
from pathlib import Path

from pyspark.sql import SparkSession

from marts.seeds import recorded_property

SCHEMA = "unit_recorded"
PROPERTY = "streamhouse.unit.fingerprint"


def test_a_property_is_read_and_a_missing_table_or_property_is_none(
    spark: SparkSession, tmp_path: Path
) -> None:
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    marked, plain = f"{SCHEMA}.marked", f"{SCHEMA}.plain"
    for name in (marked, plain):
        location = tmp_path / name
        spark.sql(f"CREATE TABLE {name} (k INT) USING DELTA LOCATION '{location}'")
    spark.sql(f"ALTER TABLE {marked} SET TBLPROPERTIES ('{PROPERTY}' = 'abc')")

    assert recorded_property(spark, marked, PROPERTY) == "abc"
    assert recorded_property(spark, plain, PROPERTY) is None
    assert recorded_property(spark, f"{SCHEMA}.never_built", PROPERTY) is None

    # A table whose files went away records nothing any more: what it recorded is rebuilt.
    shutil.rmtree(tmp_path / plain)
    assert recorded_property(spark, plain, PROPERTY) is None
