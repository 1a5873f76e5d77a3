"""Table creation when another driver creates the same table at the same moment."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from lake.tables import BRONZE_QUAKE_CHANGES
from spark_jobs import delta_io


class _LosingBuilder:
    """A create builder whose commit loses the race to another writer."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self

    def execute(self) -> None:
        raise RuntimeError("[DELTA_PROTOCOL_CHANGED] multiple writers to an empty directory")


class _FakeDeltaTable:
    @staticmethod
    def createIfNotExists(spark: object) -> _LosingBuilder:  # noqa: N802 (Delta's name)
        return _LosingBuilder()


def test_losing_the_creation_race_to_another_driver_is_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two drivers starting on a fresh lake: the loser finds the winner's table and goes on."""
    exists = iter([False, True])  # missing when checked, there after the failed commit
    monkeypatch.setattr(delta_io, "table_exists", lambda spark, path: next(exists))
    monkeypatch.setattr(delta_io, "DeltaTable", _FakeDeltaTable)
    like = type("Like", (), {"schema": object()})()
    delta_io.ensure_table(object(), BRONZE_QUAKE_CHANGES, "/lake/bronze", like)  # type: ignore[arg-type]


def test_a_creation_that_fails_for_another_reason_still_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delta_io, "table_exists", lambda spark, path: False)
    monkeypatch.setattr(delta_io, "DeltaTable", _FakeDeltaTable)
    like = type("Like", (), {"schema": object()})()
    with pytest.raises(RuntimeError, match="DELTA_PROTOCOL_CHANGED"):
        delta_io.ensure_table(object(), BRONZE_QUAKE_CHANGES, "/lake/bronze", like)  # type: ignore[arg-type]


def test_a_table_another_process_created_is_seen_through_this_jvm_s_cached_log(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The race of the two stream drivers on a fresh lake, its window hit on purpose, on real
    Delta: this JVM looks at bronze's location while it is empty (Delta caches that log),
    another process commits the table's version 0, then this one ensures the table. The
    cached log still says there is no table (``DeltaTable.isDeltaTable``: the background
    driver died at start with DELTA_PROTOCOL_CHANGED and silver stalled); the fresh one does."""
    like = spark.range(1).selectExpr("id", "current_date() as ingest_date")
    path, other = tmp_path / "bronze", tmp_path / "other-process"
    # This JVM opens the log while the location is empty (the loser's own CREATE does).
    assert delta_io.table_version(spark, str(path)) == -1
    # The other process's first commit, made without this JVM's cache knowing.
    delta_io.ensure_table(spark, BRONZE_QUAKE_CHANGES, str(other), like)
    (path / "_delta_log").mkdir(parents=True)
    shutil.copy(other / "_delta_log" / f"{0:020d}.json", path / "_delta_log")

    assert delta_io.table_exists(spark, str(path))
    delta_io.ensure_table(spark, BRONZE_QUAKE_CHANGES, str(path), like)
    assert delta_io.table_version(spark, str(path)) == 0  # seen, not created a second time
