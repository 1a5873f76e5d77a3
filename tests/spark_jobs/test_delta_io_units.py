"""Table creation when another driver creates the same table at the same moment."""

from __future__ import annotations

from typing import Any

import pytest

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
