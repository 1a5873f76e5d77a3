"""Airflow 3 on the real stack: a day of ``lakehouse_daily`` through the scheduler, then a
rerun that changes nothing, proven with Delta time travel; a failed expectation that alerts
people and stops the run.

The stack's four Airflow processes (API server, scheduler, dag-processor,
triggerer) are started by ``stack up`` like every other service; the stack's
poller and stream fill the lake from the simulator's fixture. The test drives
Airflow the way an operator does, over its REST API: unpause, trigger the day,
follow the run, then clear it so the scheduler runs every task again. Each
task is a LocalExecutor process, a client of the stack's Spark Connect server
(the replay's a JVM of its own), and one run still takes minutes: the run and
its rerun are made once (module fixture) and every assertion reads them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyspark.sql import SparkSession

from core.intervals import Interval
from core.settings import PROJECT_ROOT, Settings, settings_env
from lake.tables import BRONZE_QUAKE_CHANGES, QUAKE_WINDOWS_1H, SILVER_QUAKES
from lake.time_travel import TableProof, commit_marker
from monitoring.batch_metrics import push_dag_run, push_quality_result
from orchestration.api_client import AirflowApi
from orchestration.proof import prove_rerun, touched_tables, versions
from spark_jobs import transforms
from spark_jobs.aggregates_stream import HOUR_QUERY
from streamhouse.daily_run import airflow_api
from streamhouse.runtime import airflow, stack

from ..receivers import Received, smtp_receiver, webhook_receiver
from .conftest import SMTP_PORT, WEBHOOK_PORT
from .prometheus_helpers import eventually, values

#: A whole UTC day of the simulator's fixture (feed_7_day_m1: 2019-02-10 .. 2019-02-16).
DAY = date(2019, 2, 14)
DAG_ID = "lakehouse_daily"
DAILY_TASKS = {
    "wait_for_bronze",
    "validate_bronze",
    "validate_silver",
    "build_marts",
    "compact",
    "validate_marts",
    "publish_docs",
    "report",
}
#: The tasks that commit to Delta tables; the rerun clears them and everything downstream.
WRITING_TASKS = ("build_marts", "compact")
RERUN_TASKS = DAILY_TASKS - {"wait_for_bronze", "validate_bronze", "validate_silver"}
#: Reruns after the first run: one rerun of the day proves it changes nothing (a second one
#: proved the same again, for about 60 s of CI).
RERUNS = 1
#: A run takes minutes on a quiet machine; far more when other test sessions share the cores.
RUN_TIMEOUT_S = 1800
#: The first test using ``daily`` pays for the run and the rerun (the suite's default is 900 s).
pytestmark = pytest.mark.timeout((1 + RERUNS) * RUN_TIMEOUT_S + 600)


@dataclass
class DailyRuns:
    """The run of DAY, its rerun, and what they did to each table."""

    settings: Settings
    api: AirflowApi
    run_id: str
    first_seconds: float
    rerun_seconds: float
    first_tasks: dict[str, str]
    rerun_tasks: dict[str, str]
    rerun_tries: dict[str, int]
    summary: dict[str, Any]
    proofs: list[TableProof]


def _states(api: AirflowApi, run_id: str, dag_id: str = DAG_ID) -> dict[str, str]:
    return {str(ti["task_id"]): str(ti["state"]) for ti in api.task_instances(dag_id, run_id)}


def _tries(api: AirflowApi, run_id: str) -> dict[str, int]:
    return {str(ti["task_id"]): int(ti["try_number"]) for ti in api.task_instances(DAG_ID, run_id)}


def _wait(api: AirflowApi, run_id: str) -> tuple[str, float]:
    began = time.monotonic()
    state = api.wait_for_run(DAG_ID, run_id, RUN_TIMEOUT_S, poll_s=2.0)
    return state, time.monotonic() - began


def _failure_help(
    settings: Settings, run_id: str, states: dict[str, str], dag_id: str = DAG_ID
) -> str:
    """The failed tasks' log tails, so a red CI run says why."""
    logs = airflow.airflow_home(settings) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    parts = [f"task states: {states}"]
    for task, state in states.items():
        if state not in ("success", "skipped"):
            for log in sorted((logs / f"task_id={task}").glob("attempt=*.log")):
                parts.append(f"--- {log}\n{log.read_text()[-4000:]}")
    return "\n".join(parts)


@pytest.fixture(scope="module")
def airflow_stack(infra_stack: Settings) -> Settings:
    """Every service, Airflow's four processes included, and the stream's tables present."""
    stack.up(infra_stack, report=print)
    needed = [BRONZE_QUAKE_CHANGES, SILVER_QUAKES, QUAKE_WINDOWS_1H]
    # Two drivers' first batches after 14 services started: minutes on a busy machine.
    deadline = time.monotonic() + 600
    while not all((Path(t.path(infra_stack.lake_uri)) / "_delta_log").is_dir() for t in needed):
        missing = [
            t.name
            for t in needed
            if not (Path(t.path(infra_stack.lake_uri)) / "_delta_log").is_dir()
        ]
        assert time.monotonic() < deadline, f"the stream did not create {missing}"
        time.sleep(3)
    return infra_stack


@pytest.fixture(scope="module")
def daily(airflow_stack: Settings, spark: SparkSession) -> DailyRuns:
    """lakehouse_daily for DAY through the scheduler, then its writing tasks cleared and rerun."""
    settings = airflow_stack
    api = airflow_api(settings)
    api.wait_for_dag(DAG_ID)
    api.set_paused(DAG_ID, False)
    run_id = api.trigger(DAG_ID, {"day": DAY.isoformat()})
    state, first_seconds = _wait(api, run_id)
    first_tasks = _states(api, run_id)
    assert state == "success", _failure_help(settings, run_id, first_tasks)
    summary = api.xcom(DAG_ID, run_id, "report")

    tables = touched_tables(settings, Interval.of_day(DAY))
    before = versions(spark, tables)
    # The rerun: every task that writes (build_marts, compact) and all after them, cleared
    # through the API so the scheduler runs them again.
    # The read-only validations of bronze and silver are left out (CI budget: each task is
    # a Spark JVM).
    rerun_seconds, rerun_tasks = 0.0, first_tasks
    for _ in range(RERUNS):
        api.request(
            "POST",
            f"/dags/{DAG_ID}/clearTaskInstances",
            json={
                "dry_run": False,
                "dag_run_id": run_id,
                "task_ids": list(WRITING_TASKS),
                "include_downstream": True,
                "only_failed": False,
                "reset_dag_runs": True,
            },
        )
        # Cleared, the run goes back to queued before the scheduler picks it up again.
        deadline = time.monotonic() + 60
        while api.run(DAG_ID, run_id)["state"] == "success":
            assert time.monotonic() < deadline, "the cleared run was not queued again"
            time.sleep(1)
        state, seconds = _wait(api, run_id)
        rerun_seconds += seconds
        rerun_tasks = _states(api, run_id)
        assert state == "success", _failure_help(settings, run_id, rerun_tasks)
    rerun_tries = {task: n for task, n in _tries(api, run_id).items() if n > 1}
    proofs = prove_rerun(spark, tables, before, commit_marker(DAG_ID, run_id))
    for proof in proofs:
        print(f"{proof.name}: {[c.line() for c in proof.commits]}")
    print(
        f"lakehouse_daily {DAY}: run {first_seconds:.0f} s, {RERUNS} reruns {rerun_seconds:.0f} s"
    )
    return DailyRuns(
        settings,
        api,
        run_id,
        first_seconds,
        rerun_seconds,
        first_tasks,
        rerun_tasks,
        rerun_tries,
        summary,
        proofs,
    )


def test_the_stack_runs_each_airflow_process_and_the_api_reports_them_healthy(
    airflow_stack: Settings,
) -> None:
    statuses = {s.name: s for s in stack.status(airflow_stack)}
    for name in airflow.COMPONENTS:
        assert statuses[name].pid is not None and statuses[name].healthy, statuses[name]
    health = httpx.get(f"{airflow_stack.airflow_url}/api/v2/monitor/health", timeout=10).json()
    for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert health[component]["status"] == "healthy", health
    # The metadata is in the stack's PostgreSQL, never SQLite; no admin/admin.
    config = airflow.config_path(airflow_stack).read_text()
    assert "sql_alchemy_conn = postgresql+psycopg2://" in config
    assert oct(airflow.config_path(airflow_stack).stat().st_mode & 0o777) == "0o600"
    password = airflow.shown_password(airflow_stack).get_secret_value()
    assert password != "admin" and len(password) >= 16
    refused = httpx.post(
        f"{airflow_stack.airflow_url}/auth/token",
        json={"username": airflow_stack.airflow.admin_user, "password": "admin"},
        timeout=10,
    )
    assert refused.status_code in (401, 403), refused.text


def test_the_dags_are_parsed_without_import_errors(airflow_stack: Settings) -> None:
    api = airflow_api(airflow_stack)
    for dag_id in (DAG_ID, "lakehouse_freshness", "lakehouse_replay"):
        api.wait_for_dag(dag_id)
    errors = api.request("GET", "/importErrors")
    assert errors["total_entries"] == 0, errors


def test_a_day_runs_every_task_through_the_scheduler(daily: DailyRuns) -> None:
    assert daily.first_tasks == dict.fromkeys(DAILY_TASKS, "success")
    assert daily.rerun_tasks == dict.fromkeys(DAILY_TASKS, "success")
    # Each task the rerun cleared ran again: its second try.
    assert daily.rerun_tries == dict.fromkeys(RERUN_TASKS, 1 + RERUNS), daily.rerun_tries
    summary = daily.summary
    assert summary["interval"] == DAY.isoformat()
    # Every layer validated, each suite with all its expectations met.
    assert set(summary["quality"]) == {"bronze", "silver", "marts"}
    for layer, suites in summary["quality"].items():
        assert suites, f"{layer}: no suite ran"
        for suite, outcome in suites.items():
            passed, evaluated = outcome.split()[0].split("/")
            assert passed == evaluated and int(evaluated) > 0, (layer, suite, outcome)
    assert summary["dbt"] and set(summary["dbt"]) <= {"success", "pass"}, summary["dbt"]
    compacted = {c["table"]: c for c in summary["compaction"]}
    assert {"lake.quake_changes", "lake.quakes", "marts.fct_quakes"} <= set(compacted)
    for entry in compacted.values():
        assert entry["files_after"] <= entry["files_before"], entry
    assert compacted["marts.fct_quakes"]["zorder_by"] == ["network_code", "fe_region_number"]
    # The build's own steps are in its task log, as `marts build` prints them.
    logs = airflow.airflow_home(daily.settings) / "logs" / f"dag_id={DAG_ID}"
    build_log = "".join(
        f.read_text() for f in logs.glob(f"run_id={daily.run_id}/task_id=build_marts/*.log")
    )
    for step in ("event dates beyond the lookback", "seeds to load:"):
        assert f"marts build: {step}" in build_log, build_log[-4000:]


def test_the_docs_site_holds_the_data_docs_and_the_dbt_docs(daily: DailyRuns) -> None:
    index = Path(daily.summary["docs"])
    assert index == daily.settings.docs_site_dir / "index.html" and index.is_file()
    site = index.parent
    gx_index = (site / "gx" / "index.html").read_text()
    for suite in ("bronze_quake_changes", "silver_quakes", "marts_fct_quakes_integrity"):
        assert suite in gx_index
    assert (site / "dbt" / "index.html").is_file() and (site / "dbt" / "catalog.json").is_file()


def test_the_rerun_changes_no_row_of_any_table(daily: DailyRuns) -> None:
    """Each commit of the rerun equals the version before it, EXCEPT ALL both ways."""
    assert {p.name for p in daily.proofs} >= {"lake.quake_changes", "lake.quakes"}
    changed = [(p.name, p.differences) for p in daily.proofs if not p.unchanged]
    assert not changed, changed
    duplicated = [(p.name, p.rows, p.distinct_keys) for p in daily.proofs if not p.keys_unique]
    assert not duplicated, duplicated
    assert all(p.rows > 0 for p in daily.proofs if p.name.startswith("lake.")), daily.proofs
    # The history shows the rerun's own versions: ZORDER rewrites the marts' partitions.
    fct_quakes = next(p for p in daily.proofs if p.name == "marts.fct_quakes")
    assert fct_quakes.commits and fct_quakes.version_after > fct_quakes.version_before
    assert "OPTIMIZE" in {c.operation for c in fct_quakes.commits}


#: A day the simulator's fixture does not cover: bronze holds no row of it, the gap in the
#: feed that "a day of the USGS feed is never empty" (quality.min_rows_per_day) exists for.
EMPTY_DAY = date(2019, 3, 1)


def test_a_failed_expectation_alerts_people_and_stops_the_run(daily: DailyRuns) -> None:
    """The day the feed delivered nothing, run through the scheduler: GX fails validate_bronze
    (no retry), the webhook and SMTP receive the alert naming DAG, task, run, try and the log,
    and nothing downstream runs: no mart is built from a day that failed its checks."""
    settings, api = daily.settings, daily.api
    received = Received()
    try:
        _fail_an_empty_day(settings, api, received)
    finally:
        # The stack is shared with the modules after this one: the failed run and suite this
        # test caused must not stay the "last outcome" that Prometheus alerts on.
        now = datetime.now(UTC)
        push_dag_run(settings, dag_id=DAG_ID, success=True, started_at=now, finished_at=now)
        push_quality_result(
            settings, suite="bronze_quake_changes", passed=1, failed=0, finished_at=now
        )


def _fail_an_empty_day(settings: Settings, api: AirflowApi, received: Received) -> None:
    host = settings.runtime.host
    with webhook_receiver(host, WEBHOOK_PORT, received), smtp_receiver(host, SMTP_PORT, received):
        run_id = api.trigger(DAG_ID, {"day": EMPTY_DAY.isoformat()})
        state, _ = _wait(api, run_id)
        states = _states(api, run_id)
        assert state == "failed", _failure_help(settings, run_id, states)
        assert states["validate_bronze"] == "failed", states
        tries = _tries(api, run_id)
        assert tries["validate_bronze"] == 1, "a failed expectation is not retried"
        for downstream in ("build_marts", "compact", "validate_marts", "publish_docs", "report"):
            assert states[downstream] == "upstream_failed", states
        title = f"GX validation failed: bronze_quake_changes ({EMPTY_DAY.isoformat()})"

        def alerted(r: Received) -> bool:
            return any(title in text for text in r.webhook_texts()) and any(
                title in text for text in r.mail_texts()
            )

        assert received.wait(alerted, 60), (received.webhook_texts(), received.mail_texts())
    webhook = next(text for text in received.webhook_texts() if title in text)
    mail = next(text for text in received.mail_texts() if title in text)
    for text in (webhook, mail):
        for fact in (f"DAG: {DAG_ID}", "task: validate_bronze", f"run: {run_id}", "try: 1"):
            assert fact in text, (fact, text)
        assert "log: http" in text and f"/dags/{DAG_ID}/runs/" in text, text
        assert "expect_table_row_count_to_be_between" in text, text
    # One alert per failure: the task's notifier leaves a GX failure to the checkpoint's action.
    assert sum(title in text for text in received.webhook_texts()) == 1, received.webhook_texts()


def test_the_sensor_waits_in_the_triggerer_while_the_day_is_not_complete(
    daily: DailyRuns,
) -> None:
    """Today's run: bronze's watermark (now) is short of today's end plus the lateness, so
    the sensor defers to the triggerer (a trigger of ours, picked up by the triggerer, no
    worker slot held) and nothing downstream starts; failing the run ends the wait."""
    api = daily.api
    today = datetime.now(UTC).date()
    run_id = api.trigger(DAG_ID, {"day": today.isoformat()})
    try:
        deadline = time.monotonic() + 300
        while (sensor := _instance(api, run_id, "wait_for_bronze"))["state"] != "deferred":
            assert sensor["state"] not in ("success", "failed"), sensor
            assert time.monotonic() < deadline, f"the sensor never deferred: {sensor}"
            time.sleep(2)
        # Held across several looks of the trigger, not just once.
        time.sleep(3 * daily.settings.airflow.wait_poke_s + 5)
        sensor = _instance(api, run_id, "wait_for_bronze")
        assert sensor["state"] == "deferred", sensor
        trigger = sensor["trigger"]
        assert trigger["classpath"] == "orchestration.sensors.BronzeWatermarkTrigger", trigger
        assert trigger["triggerer_id"] is not None, f"no triggerer runs the trigger: {trigger}"
        states = _states(api, run_id)
        started = {t: s for t, s in states.items() if t != "wait_for_bronze" and s != "None"}
        assert not started, f"tasks started before the day was complete: {started}"
        _a_past_day_runs_beside(api, run_id)
    finally:
        api.request("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})
    assert api.run(DAG_ID, run_id)["state"] == "failed"
    assert _instance(api, run_id, "wait_for_bronze")["state"] != "deferred"
    # The triggerer's own log of the trigger: it looked at bronze several times, each time
    # short of the day's end plus the lateness.
    logs = airflow.airflow_home(daily.settings) / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
    looks = [
        line
        for log in (logs / "task_id=wait_for_bronze").glob("*.trigger.*.log")
        for line in log.read_text().splitlines()
        if "has not reached" in line
    ]
    assert len(looks) >= 3, looks


def _a_past_day_runs_beside(api: AirflowApi, waiting: str) -> None:
    """While ``waiting`` holds the DAG's one active run, a day that is over still runs: as
    a backfill (``streamhouse airflow run-daily``, ``make demo``), whose runs have their own
    max_active_runs. A manual run stays queued behind it (the demo of 2026-12-07 waited past
    midnight behind the scheduled run of the day before, whose sensor waits hours)."""
    backfill = api.backfill_day(DAG_ID, DAY, {"day": DAY.isoformat()})
    try:
        deadline = time.monotonic() + 300
        while _instance(api, backfill, "wait_for_bronze")["state"] != "success":
            assert time.monotonic() < deadline, (
                f"the backfill of {DAY} did not start beside the waiting run: "
                f"{_states(api, backfill)}"
            )
            time.sleep(2)
        assert _instance(api, waiting, "wait_for_bronze")["state"] == "deferred"
    finally:
        # Its validations would start (Spark tasks); the point is made.
        api.request("PATCH", f"/dags/{DAG_ID}/dagRuns/{backfill}", json={"state": "failed"})


def _instance(api: AirflowApi, run_id: str, task_id: str) -> dict[str, Any]:
    return next(ti for ti in api.task_instances(DAG_ID, run_id) if ti["task_id"] == task_id)


#: On-time events the freshness and replay runs need (the fixture's 2019 events are all late,
#: so without them the window tables stay empty: stale for dbt, nothing to reconcile).
ON_TIME_EVENTS = 600


def _load_the_last_hour(settings: Settings, spark: SparkSession) -> datetime:
    """ON_TIME_EVENTS events of the last hour through the stack's stream, until the hour
    windows hold them; the moment before which every window is closed and rolled up."""
    env = settings_env(settings)
    env["STREAMHOUSE_LOADGEN__METRICS_PORT"] = "0"
    load = subprocess.run(
        [
            sys.executable, "-m", "streamhouse.cli", "loadgen", "--events", str(ON_TIME_EVENTS),
            "--max", "--history-days", "0.04",
        ],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert load.returncode == 0, load.stdout[-2000:] + load.stderr[-2000:]
    loaded_at = datetime.now(UTC)
    hours = QUAKE_WINDOWS_1H.path(settings.lake_uri)
    deadline = time.monotonic() + 600
    while spark.read.format("delta").load(hours).count() == 0:
        assert time.monotonic() < deadline, "the hour windows got no row of the load"
        time.sleep(5)
    # One more rollup trigger (10 s on the test stack), so every hour closed by then is written.
    time.sleep(transforms.duration_ms(settings.trigger_for(HOUR_QUERY)) / 1000 + 5)
    # A window is closed once the watermark (newest event time - allowed lateness) passed it.
    lateness_s = transforms.duration_ms(settings.spark.watermark_delay) / 1000
    return loaded_at - timedelta(seconds=lateness_s + 300)


def _scheduled_run(api: AirflowApi, dag_id: str, timeout_s: float = 120.0) -> str:
    """The id of the run the scheduler created for ``dag_id`` on its own schedule."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = api.request("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]
        scheduled = [r["dag_run_id"] for r in runs if r["run_type"] == "scheduled"]
        if scheduled:
            return str(scheduled[0])
        assert time.monotonic() < deadline, f"the scheduler started no run of {dag_id}: {runs}"
        time.sleep(2)


def test_the_freshness_and_replay_dags_run_on_the_stack(
    airflow_stack: Settings, spark: SparkSession
) -> None:
    """lakehouse_freshness (dbt source freshness, the stream's Kafka lag) and lakehouse_replay
    (bronze replayed into side tables and reconciled with the live ones, closed windows),
    after an hour of on-time events: the hourly freshness run the scheduler starts when the
    DAG is unpaused, and a replay triggered over the API. Both succeed, with their results in
    XCom, and each run's success replaces the failure an earlier run left in Prometheus."""
    settings, api = airflow_stack, airflow_api(airflow_stack)
    closed_before = _load_the_last_hour(settings, spark)
    runs = {}
    dag_ids = ("lakehouse_freshness", "lakehouse_replay")
    # As if an earlier run of each had failed (their failure callbacks push this): a
    # successful run must replace it, or DagRunFailed pages on for good.
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    for dag_id in dag_ids:
        push_dag_run(
            settings,
            dag_id=dag_id,
            success=False,
            started_at=an_hour_ago,
            finished_at=an_hour_ago + timedelta(minutes=1),
        )
    try:
        for dag_id in dag_ids:
            api.wait_for_dag(dag_id)
            api.set_paused(dag_id, False)
        # Unpaused, the hourly DAG gets its latest hour's run (catchup off): that is the run
        # under test. A manual run beside it queued behind that one (one active run at a time).
        runs["lakehouse_freshness"] = _scheduled_run(api, "lakehouse_freshness")
        runs["lakehouse_replay"] = api.trigger(
            "lakehouse_replay", {"source": "bronze", "closed_before": closed_before.isoformat()}
        )
        for dag_id, run_id in runs.items():
            state = api.wait_for_run(dag_id, run_id, RUN_TIMEOUT_S, poll_s=2.0)
            states = _states(api, run_id, dag_id)
            assert state == "success", _failure_help(settings, run_id, states, dag_id)
    finally:
        # Paused again: an hourly freshness run must not go on through the later modules.
        for dag_id in dag_ids:
            api.set_paused(dag_id, True)
    freshness = api.xcom("lakehouse_freshness", runs["lakehouse_freshness"], "source_freshness")
    assert {r["status"] for r in freshness} <= {"pass", "warn"}, freshness
    assert {r["source"].split(".")[-1] for r in freshness} >= {
        "quake_changes",
        "quakes",
        "quake_windows_1m",
        "quake_windows_1h",
    }, freshness
    lags = api.xcom("lakehouse_freshness", runs["lakehouse_freshness"], "consumer_lag")
    assert lags and all(lag <= settings.airflow.max_consumer_lag_records for lag in lags.values())
    reconciled = api.xcom("lakehouse_replay", runs["lakehouse_replay"], "reconcile")
    assert reconciled["differences"] == 0, reconciled
    assert reconciled["replayed"]["quake_windows_1m"] > 0, reconciled
    success = "max by (dag_id) (streamhouse_dag_last_run_success)"
    wanted = dict.fromkeys(dag_ids, 1.0)
    seen = eventually(
        settings, success, lambda v: {d: v.get(d) for d in dag_ids} == wanted, 60, "dag_id"
    )
    assert {d: seen.get(d) for d in dag_ids} == wanted, seen


def _until(
    settings: Settings, expr: str, by: str, wanted: dict[str, float], timeout_s: float
) -> None:
    seen = eventually(settings, expr, lambda s: s == wanted, timeout_s, by)
    assert seen == wanted, f"{expr}: {seen}, not {wanted}"


def test_prometheus_reads_each_component_s_health_and_sees_one_stop(daily: DailyRuns) -> None:
    """Job airflow (the plugin on the API server): every component healthy, the DAGs' paused
    flags and their newest runs' ends as the REST API has them; the triggerer stopped, its
    health turns 0 (the input of AirflowComponentUnhealthy) and its heartbeat ages. Last in
    the module: it restarts it."""
    settings, api = daily.settings, daily.api
    healthy = "max by (component) (streamhouse_airflow_component_healthy)"
    everyone = dict.fromkeys(("metadatabase", "scheduler", "dag_processor", "triggerer"), 1.0)
    _until(settings, healthy, "component", everyone, 60)
    dags = api.request("GET", "/dags")["dags"]
    paused = {str(d["dag_id"]): float(d["is_paused"]) for d in dags}
    assert paused["lakehouse_daily"] == 0.0  # the fixture unpaused it
    _until(settings, "max by (dag_id) (streamhouse_airflow_dag_paused)", "dag_id", paused, 30)
    # Each DAG's newest end per final state, as the REST API lists the runs (the freshness
    # run of the test above among them): the input of FreshnessCheckOverdue.
    ends: dict[str, float] = {}
    for dag_id in paused:
        for run in api.request("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]:
            if run["state"] in ("success", "failed") and run["end_date"]:
                key = f"{dag_id}/{run['state']}"
                end = datetime.fromisoformat(run["end_date"]).timestamp()
                ends[key] = max(ends.get(key, 0.0), end)
    assert "lakehouse_freshness/success" in ends, ends
    expr = (
        'label_join(streamhouse_airflow_dag_last_run_end_timestamp_seconds{job="airflow"}, '
        '"key", "/", "dag_id", "state")'
    )

    def same_ends(seen: dict[str, float]) -> bool:
        ours = {k: v for k, v in seen.items() if k.split("/")[0] in paused}
        return ours.keys() == ends.keys() and all(abs(ours[k] - ends[k]) < 1e-3 for k in ends)

    seen = eventually(settings, expr, same_ends, 30, by="key")
    assert same_ends(seen), (seen, ends)
    stack.down(settings, ["airflow-triggerer"], report=print)
    try:
        # Stopped cleanly, its job ends: unhealthy at once, not after the 30 s threshold a
        # killed one would take. No heartbeat comes after: its age only grows.
        _until(settings, healthy, "component", everyone | {"triggerer": 0.0}, 120)
        age = 'max(streamhouse_airflow_heartbeat_age_seconds{component="triggerer"})'
        before = next(iter(values(settings, age).values()))
        time.sleep(10)
        after = next(iter(values(settings, age).values()))
        assert after - before >= 5, (before, after)
    finally:
        stack.up(settings, ["airflow-triggerer"], report=print)
    _until(settings, healthy, "component", everyone, 120)
