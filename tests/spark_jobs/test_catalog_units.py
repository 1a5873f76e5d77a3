"""A catalog name whose table's files went away: listed, not fatal, and re-pointed.

The fault test runs the stream on a lake of its own and registers the lake's names
there; once its temporary lake was deleted, ``streamhouse catalog tables`` failed on
DELTA_PATH_DOES_NOT_EXIST and ``register_table`` could no longer move the names back.
Spark's in-memory catalog here, the same calls as on the metastore.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from core.errors import UserFacingError
from core.settings import Settings
from lake.tables import SILVER_QUAKES
from spark_jobs.catalog import (
    MISSING_LOCATION,
    describe_tables,
    ensure_schemas,
    metastore_lock,
    open_metastore,
    register_lake_tables,
    register_table,
    registered_location,
    require_metastore,
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


def test_the_lake_is_registered_from_one_listing_and_a_moved_name_follows(
    spark: SparkSession, tmp_path: Path
) -> None:
    """``register_lake_tables`` lists the schema once and looks at each registered table
    once; a name at its place stays, a name whose files went away is re-pointed, a table
    with no Delta log is not registered."""
    first, moved = _lake(tmp_path / "first"), _lake(tmp_path / "moved")
    like = spark.createDataFrame([("q1", 1)], "entity_id string, updated_ms long")
    for settings in (first, moved):
        ensure_table(spark, SILVER_QUAKES, SILVER_QUAKES.path(settings.lake_uri), like)
    name = "unit_catalog_lake.quakes"
    spark.sql(f"DROP TABLE IF EXISTS {name}")

    registered = register_lake_tables(spark, first)
    assert registered[name] and sum(registered.values()) == 1, registered
    assert register_lake_tables(spark, first) == registered  # at its place: left as it is

    shutil.rmtree(SILVER_QUAKES.path(first.lake_uri).removeprefix("file:"))
    assert register_lake_tables(spark, moved) == registered
    location = registered_location(spark, name)
    assert location is not None
    assert location.removeprefix("file:").rstrip("/") == SILVER_QUAKES.path(
        moved.lake_uri
    ).removeprefix("file:").rstrip("/")


def _catalog_down(tmp_path: Path) -> tuple[Settings, int]:
    """Settings of a hive catalog whose PostgreSQL port nothing listens on; that port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    settings = Settings(
        state_dir=tmp_path,
        catalog={"kind": "hive", "password": "generated"},
        postgres={"port": port, "connect_timeout_s": 2},
    )
    return settings, port


def test_the_catalog_s_database_down_is_one_sentence(tmp_path: Path) -> None:
    """Nothing listens at the catalog's PostgreSQL: the check before a JVM starts and the
    lock around metastore DDL both name the server and what to do (before, the lock raised
    psycopg's OperationalError and the commands printed a traceback)."""
    settings, port = _catalog_down(tmp_path)
    expected = rf"^The catalog's PostgreSQL at 127\.0\.0\.1:{port} did not answer \(.*\): start it"
    with pytest.raises(UserFacingError, match=expected):
        require_metastore(settings)
    with pytest.raises(UserFacingError, match=expected), metastore_lock(settings):
        pass
    require_metastore(_lake(tmp_path))  # the in-memory catalog needs no server


def test_a_driver_opens_its_catalog_without_waiting_on_a_down_database(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every driver opens the metastore under the lock (``open_metastore``); the catalog's
    database down, a stream's driver still starts, with the reason in its log."""
    settings, port = _catalog_down(tmp_path)
    open_metastore(spark, settings)
    assert f"could not open the catalog: The catalog's PostgreSQL at 127.0.0.1:{port}" in (
        caplog.text
    )
