"""The daily compaction's order of work, with stand-ins for Delta's OPTIMIZE and VACUUM (their
real runs are tested in tests/lake and through the DAG in tests/integration/test_airflow.py)."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from core.intervals import Interval
from core.settings import Settings
from lake.maintenance import CompactionResult, CompactionTarget, VacuumResult
from orchestration import daily


def test_tables_are_compacted_together_each_vacuumed_after_its_own_optimize(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(state_dir=tmp_path, maintenance={"parallel_tables": 3})
    interval = Interval.of_day(date(2019, 2, 14))
    targets = daily.compaction_targets(settings, interval, [date(2019, 2, 14)])
    assert len(targets) > 3
    # Three OPTIMIZEs must be under way at once: one table at a time never gets past this.
    together = threading.Barrier(3, timeout=10)
    events: list[str] = []
    lock = threading.Lock()

    def optimize(_spark: Any, target: CompactionTarget) -> CompactionResult:
        with lock:
            events.append(f"optimize {target.name}")
        if target in targets[:3]:
            together.wait()
        return CompactionResult(target.name, target.where, (), 2, 1, 20, 10, 1, 2, 0, 1, 0.1)

    def vacuum(_spark: Any, name: str, *_args: Any) -> VacuumResult:
        with lock:
            events.append(f"vacuum {name}")
        return VacuumResult(name, 168, 0, 1, 0.1)

    monkeypatch.setattr(daily, "optimize", optimize)
    monkeypatch.setattr(daily, "vacuum", vacuum)
    monkeypatch.setattr(daily, "bronze_partitions", lambda *_: [date(2019, 2, 14)])
    result = daily.compact(None, settings, interval)  # type: ignore[arg-type]

    names = [t.name for t in targets]
    # One result per table, in the targets' order whatever order they finished in.
    assert [r["name"] for r in result["optimize"]] == names
    assert [r["name"] for r in result["vacuum"]] == names
    for name in names:
        assert events.index(f"optimize {name}") < events.index(f"vacuum {name}"), events
