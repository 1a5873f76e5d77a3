"""The DAG folder as Airflow's DagBag sees it: no import error, cheap to parse, every DAG
with tags, an owner, retries with backoff, a timeout and failure callbacks on each task.

The DagBag is loaded in a fresh interpreter (``dagbag_probe.py``): Airflow sets
up logging and global state on import. There, opening a network connection
while the files are parsed raises, and the heavy libraries the tasks use
(Spark, GX, dbt, pyarrow, Kafka) must not be imported by a DAG file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.settings import PROJECT_ROOT

from .airflow_process import run_isolated

DAGS = ("lakehouse_daily", "lakehouse_freshness", "lakehouse_replay")
#: Parsing the three files, after Airflow itself is imported; a Spark session or a query
#: at the top of a file costs tens of seconds. Generous for a loaded 2-core machine.
PARSE_BUDGET_S = 8.0


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("airflow-home")
    output = home / "dagbag.json"
    result = run_isolated(
        [str(Path(__file__).with_name("dagbag_probe.py")), str(PROJECT_ROOT / "dags"), str(output)],
        home,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded: dict[str, Any] = json.loads(output.read_text())
    return loaded


def test_no_import_errors_and_every_dag_is_there(dagbag: dict[str, Any]) -> None:
    assert dagbag["import_errors"] == {}
    assert set(dagbag["dags"]) == set(DAGS)


def test_parsing_is_cheap_and_imports_no_task_library(dagbag: dict[str, Any]) -> None:
    assert dagbag["seconds"] < PARSE_BUDGET_S, dagbag["file_seconds"]
    assert dagbag["heavy_imports"] == [], "a DAG file imports a task's library at parse time"


@pytest.mark.parametrize("dag_id", DAGS)
def test_every_task_has_owner_retries_timeout_and_failure_callback(
    dagbag: dict[str, Any], dag_id: str
) -> None:
    dag = dagbag["dags"][dag_id]
    assert dag["tags"] and "lakehouse" in dag["tags"]
    assert dag["doc_md"]
    assert dag["dag_failure_callbacks"] >= 1
    assert dag["max_active_runs"] == 1
    for task_id, task in dag["tasks"].items():
        assert task["owner"] == "data-platform", task_id
        assert task["retries"] >= 2, task_id
        assert task["retry_exponential_backoff"], task_id
        assert task["execution_timeout_s"], task_id
        assert task["failure_callbacks"] >= 1, task_id


def test_daily_has_a_data_interval_a_deferrable_sensor_and_a_deadline(
    dagbag: dict[str, Any],
) -> None:
    daily = dagbag["dags"]["lakehouse_daily"]
    assert daily["timetable"] == "CronDataIntervalTimetable"
    assert daily["catchup"] is True
    assert daily["params"] == ["day"]
    sensor = daily["tasks"]["wait_for_bronze"]
    assert sensor["operator"] == "BronzeWatermarkSensor" and sensor["deferrable"]
    (deadline,) = daily["deadlines"]
    assert deadline["reference"] == "DagRunQueuedAtDeadline"
    assert deadline["callback"] == "orchestration.notifiers.deadline_missed"
    tasks = daily["tasks"]
    # Inputs are validated before the marts are built; a failed validation stops the rest.
    assert tasks["build_marts"]["upstream"] == ["validate_bronze", "validate_silver"]
    assert tasks["validate_bronze"]["upstream"] == ["wait_for_bronze"]
    assert tasks["compact"]["upstream"] == ["build_marts"]
    # Compaction changes no row: the marts' validation runs beside it, not after it.
    assert tasks["validate_marts"]["upstream"] == ["build_marts"]
    assert tasks["publish_docs"]["upstream"] == ["validate_marts"]
    assert set(tasks["report"]["upstream"]) >= {"compact", "publish_docs"}


def test_freshness_is_hourly_and_replay_is_manual(dagbag: dict[str, Any]) -> None:
    freshness = dagbag["dags"]["lakehouse_freshness"]
    assert freshness["timetable"] == "CronTriggerTimetable" and freshness["catchup"] is False
    replay = dagbag["dags"]["lakehouse_replay"]
    assert replay["timetable"] == "NullTimetable"
    assert replay["params"] == ["closed_before", "from_time", "source", "to_time"]
