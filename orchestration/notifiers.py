"""Airflow's alerts to people: a failed task, a failed run, a missed deadline.

All three go through ``monitoring.notify`` (the webhook and SMTP of the
``alerting`` settings) and name the DAG, the task, the run, the try and a
link to the log in Airflow's UI.

- Every task has ``LakehouseNotifier`` as its ``on_failure_callback``: it
  runs in the task's own process when the last try failed. A data-quality
  failure (``QualityCheckError``) was already announced by the GX
  checkpoint's alert action, with the failed expectations, so it is not sent
  twice.
- The DAG has it too, for a run that fails without a failing task (a run
  timeout); apache/airflow#63374 reports DAG-level failure callbacks that do
  not fire, which is why the tasks carry their own.
- A run still going at its deadline (``DeadlineAlert``) makes the scheduler
  queue ``deadline_missed``, which the triggerer awaits.

Each also records the run's outcome for the dashboards (``batch_metrics``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from monitoring.batch_metrics import MetricsPushError, push_dag_run
from monitoring.notify import Alert, AlertDeliveryError, Origin, send
from orchestration.config import settings as runtime_settings

log = logging.getLogger(__name__)


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    """The run's page in Airflow's UI."""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}"


def origin_of(context: Mapping[str, Any]) -> Origin:
    """Where a callback's context comes from: the task instance, or the run alone."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    if ti is not None and getattr(ti, "task_id", None):
        return Origin(
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            try_number=ti.try_number,
            log_url=ti.log_url,
        )
    dag_id = getattr(dag_run, "dag_id", None) or str(context.get("dag_id") or "?")
    run_id = getattr(dag_run, "run_id", None) or "?"
    return Origin(
        dag_id=dag_id,
        run_id=run_id,
        log_url=run_url(runtime_settings().airflow_url, dag_id, run_id),
    )


def _is_quality_failure(exception: BaseException | None) -> bool:
    # Imported lazily: a DAG file that uses this notifier must not pull in GX at parse time.
    if exception is None:
        return False
    from quality.run import QualityCheckError

    # The task re-raises it as AirflowFailException (no retry), caused by it.
    return isinstance(exception, QualityCheckError) or isinstance(
        exception.__cause__, QualityCheckError
    )


def _push_outcome(dag_id: str, success: bool, started_at: datetime | None) -> None:
    now = datetime.now(UTC)
    try:
        push_dag_run(
            runtime_settings(),
            dag_id=dag_id,
            success=success,
            started_at=started_at or now,
            finished_at=now,
        )
    except MetricsPushError as error:
        log.warning("%s", error)


def task_failure_alert(context: Mapping[str, Any]) -> Alert:
    """The alert of a task whose last try failed."""
    origin = origin_of(context)
    exception = context.get("exception")
    reason = f"{type(exception).__name__}: {exception}" if exception is not None else "failed"
    params = context.get("params") or {}
    facts = origin.facts() + ((("day", str(params["day"])),) if params.get("day") else ())
    return Alert(
        title=f"Airflow task failed: {origin.dag_id}.{origin.task_id}",
        facts=facts,
        details=reason[:2000],
        link=origin.log_url,
    )


class LakehouseNotifier(BaseNotifier):
    """``on_failure_callback`` of the lakehouse DAGs and of each of their tasks."""

    def notify(self, context: Any) -> None:
        settings = runtime_settings()
        origin = origin_of(context)
        dag_run = context.get("dag_run")
        _push_outcome(str(origin.dag_id), False, getattr(dag_run, "start_date", None))
        if origin.task_id is None:
            # The run failed: its failing task has sent its own alert unless none did.
            if context.get("reason") == "task_failure":
                return
            alert = Alert(
                title=f"Airflow run failed: {origin.dag_id}",
                facts=origin.facts(),
                details=str(context.get("reason") or "the run failed"),
                link=origin.log_url,
            )
        elif _is_quality_failure(context.get("exception")):
            return  # the GX checkpoint's action sent it, with the failed expectations
        else:
            alert = task_failure_alert(context)
        try:
            send(settings.alerting, alert)
        except AlertDeliveryError as error:
            log.error("%s", error)


def deadline_alert(context: Mapping[str, Any], deadline_s: float) -> Alert:
    """The alert of a run that missed its deadline (the scheduler's context of the miss)."""
    dag_run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id = str(dag_run.get("dag_id", "?"))
    run_id = str(dag_run.get("dag_run_id") or dag_run.get("run_id") or "?")
    origin = Origin(
        dag_id=dag_id,
        run_id=run_id,
        log_url=run_url(runtime_settings().airflow_url, dag_id, run_id),
    )
    return Alert(
        title=f"Airflow deadline missed: {dag_id}",
        facts=(*origin.facts(), ("state", str(dag_run.get("state", "?")))),
        details=(
            f"The run was not finished {deadline_s:.0f} s after it was queued "
            f"(queued at {dag_run.get('queued_at')}, deadline {deadline.get('deadline_time')})."
        ),
        link=origin.log_url,
        severity="warning",
    )


async def deadline_missed(context: Mapping[str, Any] | None = None, deadline_s: float = 0) -> str:
    """The deadline's callback, awaited by the triggerer: alert people; which channels did."""
    alert = deadline_alert(context or {}, deadline_s)
    delivered = await asyncio.to_thread(send, runtime_settings().alerting, alert)
    return ", ".join(delivered) or "no channel configured"
