"""One run of ``lakehouse_daily`` on the stack's scheduler, followed and proven.

Used by ``streamhouse airflow run-daily`` and by ``make demo``: run the day
over Airflow's REST API (a day that is over as a one-day backfill, today as a
manual run), show each task's state as it changes, then
print the run's summary (the GX results per layer, ``dbt build``'s nodes, the
compaction's files before and after, where the docs are) and, given a Spark
session, the time-travel proof: every table the run committed to equals,
at each of its commits, the version before it (``EXCEPT ALL`` both ways),
and its key is unique. The run's commits are found by their marker in
``userMetadata``; the stream's commits in between are not the run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console

from core.errors import UserFacingError
from core.intervals import Interval
from core.settings import Settings
from lake.time_travel import TableProof, commit_marker
from streamhouse import rendering

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from orchestration.api_client import AirflowApi

DAG_ID = "lakehouse_daily"


@dataclass
class DailyRun:
    """A finished run: its id and state, each task's state, its summary and proof."""

    run_id: str
    state: str
    tasks: dict[str, str]
    summary: dict[str, Any] | None = None
    proofs: list[TableProof] = field(default_factory=list)

    @property
    def proven(self) -> bool:
        return all(p.unchanged and p.keys_unique for p in self.proofs)


def airflow_api(settings: Settings) -> AirflowApi:
    """A client of the stack's Airflow REST API, as its admin."""
    from orchestration.api_client import AirflowApi
    from streamhouse.runtime.airflow import shown_password

    return AirflowApi(
        settings.airflow_url,
        settings.airflow.admin_user,
        shown_password(settings).get_secret_value(),
    )


def is_backfill(day: date, now: datetime) -> bool:
    """Whether ``day`` (UTC) is over at ``now``: its run is then a backfill, not a trigger."""
    return day < now.astimezone(UTC).date()


def run_day(
    settings: Settings,
    api: AirflowApi,
    day: date,
    *,
    timeout_s: float,
    console: Console,
    spark: SparkSession | None = None,
) -> DailyRun:
    """Trigger ``lakehouse_daily`` for ``day``, follow it; with ``spark``, prove its commits."""
    from orchestration.proof import prove_rerun, touched_tables, versions

    tables = touched_tables(settings, Interval.of_day(day))
    before = versions(spark, tables) if spark is not None else {}
    api.wait_for_dag(DAG_ID)
    api.set_paused(DAG_ID, False)
    conf = {"day": day.isoformat()}
    if is_backfill(day, datetime.now(UTC)):
        # A day that is over is a backfill: the DAG admits one run at a time, and a scheduled
        # run waiting for its data (past midnight, on a stack without live events) would
        # hold a manual run back for as long as its sensor waits (hours).
        run_id = api.backfill_day(DAG_ID, day, conf)
    else:
        run_id = api.trigger(DAG_ID, conf)
    console.print(f"[cyan]•[/] {DAG_ID} for {day}: run {run_id} (UI: {settings.airflow_url})")
    seen: dict[str, str] = {}

    def show(tis: list[dict[str, Any]]) -> None:
        for ti in tis:
            task, state = str(ti["task_id"]), str(ti.get("state"))
            if seen.get(task) != state:
                seen[task] = state
                console.print(f"  {task}: {state}")

    state = api.wait_for_run(DAG_ID, run_id, timeout_s, show)
    tasks = {str(ti["task_id"]): str(ti["state"]) for ti in api.task_instances(DAG_ID, run_id)}
    run = DailyRun(run_id, state, tasks)
    if state != "success":
        return run
    run.summary = api.xcom(DAG_ID, run_id, "report")
    if spark is not None:
        run.proofs = prove_rerun(spark, tables, before, commit_marker(DAG_ID, run_id))
    return run


def show_run(run: DailyRun, out: Console) -> None:
    """Task states, the GX summary, compaction, the docs and the time-travel proof."""
    states = rendering.table("task", "state", title=f"{DAG_ID} {run.run_id}: {run.state}")
    for task, state in run.tasks.items():
        colour = "green" if state == "success" else "red"
        states.add_row(task, f"[{colour}]{state}[/]")
    out.print(states)
    summary = run.summary or {}
    if summary.get("quality"):
        quality = rendering.table("layer", "suite", "result", title="Great Expectations")
        for layer, suites in summary["quality"].items():
            for suite, outcome in suites.items():
                quality.add_row(layer, suite, str(outcome))
        out.print(quality)
    if summary.get("compaction"):
        compaction = rendering.table(
            "table", "files before", "after", "Z-order by", title="compaction"
        )
        for entry in summary["compaction"]:
            compaction.add_row(
                str(entry["table"]),
                str(entry["files_before"]),
                str(entry["files_after"]),
                ", ".join(entry.get("zorder_by") or []) or "-",
            )
        out.print(compaction)
    if summary.get("docs"):
        out.print(f"docs (GX Data Docs and dbt docs): {summary['docs']}")
    if run.proofs:
        proof = rendering.table(
            "table", "version before", "after", "the run's commits", "rows changed", "rows",
            "distinct keys", title="time travel: each commit of the run against the version before",
        )  # fmt: skip
        for p in run.proofs:
            changed = sum(old + new for _, old, new in p.differences)
            proof.add_row(
                p.name,
                str(p.version_before),
                str(p.version_after),
                ", ".join(f"{c.version} {c.operation}" for c in p.commits) or "none",
                str(changed),
                str(p.rows),
                str(p.distinct_keys),
            )
        out.print(proof)
        if run.proven:
            out.print("[green]unchanged[/]: no row of any table changed, every key is unique")


def require_success(run: DailyRun) -> None:
    """One sentence when the run failed or its proof found a changed row."""
    if run.state != "success":
        failed = [task for task, state in run.tasks.items() if state not in ("success", "skipped")]
        raise UserFacingError(
            f"{DAG_ID} {run.run_id} {run.state} (tasks {', '.join(failed) or '-'}): their logs "
            "are in Airflow's UI (`streamhouse airflow url`)."
        )
    if not run.proven:
        changed = [p.name for p in run.proofs if not (p.unchanged and p.keys_unique)]
        raise UserFacingError(f"{DAG_ID} {run.run_id} changed rows of {', '.join(changed)}.")
