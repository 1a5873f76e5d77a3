"""The bodies of the lakehouse DAGs' tasks: the Airflow context in, ``daily``'s work out.

The DAG files import this module inside each task, so parsing a DAG never
imports Spark, dbt or GX. Each task reads the settings from its environment,
opens its own SparkSession, a client session on the stack's Spark Connect
server (``spark.tasks_on_connect``; else a JVM per task process), and marks
its Delta commits with the run's marker.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from lake.time_travel import commit_marker
from monitoring.batch_metrics import MetricsPushError, push_dag_run
from orchestration import daily
from orchestration.config import settings as runtime_settings
from orchestration.intervals import interval_of
from orchestration.notifiers import origin_of

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def _spark(context: Any, catalog: bool = False, remote: bool = True) -> SparkSession:
    """The task's session; ``remote=False``: a driver of its own even with a Connect server."""
    ti = context["ti"]
    return daily.task_spark(
        runtime_settings(),
        f"airflow-{ti.dag_id}-{ti.task_id}",
        commit_marker(ti.dag_id, ti.run_id),
        catalog=catalog,
        remote=remote,
    )


def validate(context: Any, layer: str, build_started: str | None = None) -> dict[str, Any]:
    """Validate ``layer`` for the run's interval; a failed expectation fails the task, no retry."""
    from quality.run import QualityCheckError, validate_layer

    ti = context["ti"]
    report = validate_layer(
        _spark(context),
        runtime_settings(),
        layer,
        interval_of(context),
        origin=origin_of(context),
        build_started=datetime.fromisoformat(build_started) if build_started else None,
        # GX files results under the run name: no "/" in it.
        run_name=f"{ti.dag_id}.{ti.run_id}",
    )
    summary = report.summary()
    log.info("validation of %s: %s", layer, summary)
    if not report.success:
        failure = QualityCheckError(report)
        raise AirflowFailException(str(failure)) from failure
    return summary


def build_marts(context: Any) -> dict[str, Any]:
    """``dbt build`` of the interval."""
    return daily.build_marts(
        _spark(context, catalog=True), runtime_settings(), interval_of(context)
    )


def compact(context: Any) -> dict[str, Any]:
    """OPTIMIZE and VACUUM of the interval's partitions, measured."""
    return daily.compact(_spark(context), runtime_settings(), interval_of(context))


def publish_docs(context: Any) -> str:
    """The docs site (GX Data Docs and the dbt docs ``build_marts`` generated); its index page."""
    ti = context["ti"]
    return daily.publish_docs(runtime_settings(), f"{ti.dag_id} run {ti.run_id}")


def push_run_success(context: Any) -> None:
    """The run's success, pushed for the dashboards and alerts by its last task.

    Failures are pushed by ``LakehouseNotifier``; a DAG that pushed only those kept its
    last failure in the Pushgateway for good, and ``DagRunFailed`` paged on through every
    successful run after it. A Pushgateway that does not answer is logged: the run's
    work is done.
    """
    ti = context["ti"]
    dag_run = context.get("dag_run")
    started = getattr(dag_run, "start_date", None) or datetime.now(UTC)
    try:
        push_dag_run(
            runtime_settings(),
            dag_id=ti.dag_id,
            success=True,
            started_at=started,
            finished_at=datetime.now(UTC),
        )
    except MetricsPushError as error:
        log.warning("%s", error)


def report(
    context: Any,
    validations: list[dict[str, Any]],
    build: dict[str, Any],
    compaction: dict[str, Any],
    docs: str,
) -> dict[str, Any]:
    """The run's summary, and its success pushed for the dashboards."""
    push_run_success(context)
    summary = {
        "interval": interval_of(context).label(),
        "quality": {
            v["layer"]: {
                name: f"{s['passed']}/{s['evaluated']} expectations"
                for name, s in v["suites"].items()
            }
            for v in validations
        },
        "dbt": build["nodes"],
        "compaction": [
            {
                "table": r["name"],
                "files_before": r["files_before"],
                "files_after": r["files_after"],
                "zorder_by": list(r["zorder_by"]),
            }
            for r in compaction["optimize"]
        ],
        "vacuum_files_deleted": {r["name"]: r["files_deleted"] for r in compaction["vacuum"]},
        "docs": docs,
    }
    log.info("lakehouse_daily %s: %s", summary["interval"], summary)
    return summary
