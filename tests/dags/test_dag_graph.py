"""``streamhouse airflow graph``: the DAG drawn by Airflow's own renderer, from the files.

Run in a fresh interpreter with its own AIRFLOW_HOME (no metadata database),
as the README's image is made; the drawing is checked for every task and
every dependency of ``lakehouse_daily``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .airflow_process import run_isolated

TASKS = (
    "wait_for_bronze",
    "validate_bronze",
    "validate_silver",
    "build_marts",
    "compact",
    "validate_marts",
    "publish_docs",
    "report",
)


def _draw(tmp_path: Path, dag_id: str, out: Path) -> subprocess.CompletedProcess[str]:
    return run_isolated(["-m", "orchestration.graph", dag_id, str(out)], tmp_path / "home")


def test_the_daily_dag_is_drawn_with_every_task_and_edge(tmp_path: Path) -> None:
    svg = tmp_path / "lakehouse_daily.svg"
    result = _draw(tmp_path, "lakehouse_daily", svg)
    assert result.returncode == 0, result.stderr[-3000:]
    text = svg.read_text()
    assert {t for t in TASKS if f">{t}</text>" in text} == set(TASKS)
    edges = set(re.findall(r"<title>(\w+)&#45;&gt;(\w+)</title>", text))
    for edge in [
        ("wait_for_bronze", "validate_bronze"),
        ("wait_for_bronze", "validate_silver"),
        ("validate_bronze", "build_marts"),
        ("validate_silver", "build_marts"),
        ("build_marts", "compact"),
        ("build_marts", "validate_marts"),
        ("compact", "report"),
        ("validate_marts", "publish_docs"),
        ("publish_docs", "report"),
    ]:
        assert edge in edges, (edge, sorted(edges))


def test_an_unknown_dag_is_named_with_the_choices(tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    result = _draw(tmp_path, "lakehouse_weekly", out)
    assert result.returncode == 1
    assert "no DAG 'lakehouse_weekly'" in result.stderr and "lakehouse_daily" in result.stderr
    assert not out.exists()
