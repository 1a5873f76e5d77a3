"""Table creation when another driver creates the same table at the same moment."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from lake.tables import BRONZE_QUAKE_CHANGES
from spark_jobs import delta_io


class _FailingBuilder:
    """A create builder whose commit fails with ``message`` (another writer got there)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self

    def execute(self) -> None:
        raise RuntimeError(self.message)


def _delta_table_failing_with(message: str) -> type:
    """A stand-in for ``DeltaTable`` whose ``createIfNotExists`` builder fails so."""

    class _FakeDeltaTable:
        @staticmethod
        def createIfNotExists(spark: object) -> _FailingBuilder:  # noqa: N802 (Delta's name)
            return _FailingBuilder(message)

    return _FakeDeltaTable


#: The loser's commit of version 0, after the winner's.
_FakeDeltaTable = _delta_table_failing_with(
    "[DELTA_PROTOCOL_CHANGED] multiple writers to an empty directory"
)
#: A create that comes while the other writer has made the log's folder, not version 0.
_FakeEarlyDeltaTable = _delta_table_failing_with(
    "[DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION] Cannot create table: the associated "
    "location is not empty"
)


def _ensure_bronze_racing(
    monkeypatch: pytest.MonkeyPatch, delta_table: type, version: Callable[[], int]
) -> None:
    """``ensure_table`` of bronze, found missing, its create done by ``delta_table``, the log's
    newest version given by ``version``."""
    monkeypatch.setattr(delta_io, "table_exists", lambda spark, path: False)  # when checked
    monkeypatch.setattr(delta_io, "table_version", lambda spark, path: version())
    monkeypatch.setattr(delta_io, "DeltaTable", delta_table)
    like = type("Like", (), {"schema": object()})()
    delta_io.ensure_table(object(), BRONZE_QUAKE_CHANGES, "/lake/bronze", like)  # type: ignore[arg-type]


def test_losing_the_creation_race_to_another_driver_is_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two drivers starting on a fresh lake: the loser finds the winner's table and goes on."""
    _ensure_bronze_racing(monkeypatch, _FakeDeltaTable, lambda: 0)  # 0: after the commit


def test_a_creation_that_fails_for_another_reason_still_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(RuntimeError, match="DELTA_PROTOCOL_CHANGED"):
        _ensure_bronze_racing(monkeypatch, _FakeDeltaTable, lambda: -1)


def test_losing_the_race_before_the_winner_s_first_commit_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The background driver's start in the CI run of 2026-12-05: bronze's folder existed,
    its version 0 did not yet; the create failed, the driver died and silver stayed empty."""
    versions = iter([-1, -1, -1, 0])  # right after the failed create, then while waiting
    monkeypatch.setattr(delta_io.time, "sleep", lambda s: None)
    _ensure_bronze_racing(monkeypatch, _FakeEarlyDeltaTable, lambda: next(versions))
    assert next(versions, None) is None  # it looked until the commit was there


def test_a_winner_that_never_commits_leaves_the_error_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delta_io, "CREATE_RACE_WAIT_S", 0.05)
    with pytest.raises(RuntimeError, match="NON_EMPTY_LOCATION"):
        _ensure_bronze_racing(monkeypatch, _FakeEarlyDeltaTable, lambda: -1)


def test_a_table_another_process_created_is_seen_through_this_jvm_s_cached_log(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The race of the two stream drivers on a fresh lake, its window hit on purpose, on real
    Delta: this JVM looks at bronze's location while it is empty (Delta caches that log),
    another process commits the table's version 0, then this one ensures the table. The
    table must be seen and not created a second time. (In one JVM the create then succeeds,
    so this passes on the code before the fix too: the failed-create path, which killed the
    background driver in the demo, is covered by the stand-in test above only.)"""
    like = spark.range(1).selectExpr("id", "current_date() as ingest_date")
    path, other = tmp_path / "bronze", tmp_path / "other-process"
    # This JVM opens the log while the location is empty (the loser's own CREATE does).
    assert delta_io.table_version(spark, str(path)) == -1
    # The other process's first commit, made without this JVM's cache knowing.
    delta_io.ensure_table(spark, BRONZE_QUAKE_CHANGES, str(other), like)
    (path / "_delta_log").mkdir(parents=True)
    shutil.copy(other / "_delta_log" / f"{0:020d}.json", path / "_delta_log")

    delta_io.ensure_table(spark, BRONZE_QUAKE_CHANGES, str(path), like)
    assert delta_io.table_version(spark, str(path)) == 0  # seen, not created a second time


def test_a_log_a_killed_run_left_empty_does_not_stop_the_creation(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A SIGKILL between the log folder and version 0 leaves ``_delta_log/_staged_commits``
    and no commit: the restart creates the table (test_streaming_faults met this)."""
    like = spark.range(1).selectExpr("id", "current_date() as ingest_date")
    path = tmp_path / "windows"
    (path / "_delta_log" / "_staged_commits").mkdir(parents=True)
    delta_io.ensure_table(spark, BRONZE_QUAKE_CHANGES, str(path), like)
    assert delta_io.table_version(spark, str(path)) == 0
