"""### lakehouse_freshness: is the stream keeping up? Hourly.

- **source_freshness**: `dbt source freshness` of bronze, silver and the
  window tables against the thresholds the dbt sources declare; a source past
  its error threshold fails the task and alerts.
- **consumer_lag**: the streaming job's Kafka lag (its own metric, through
  Prometheus) against `airflow.max_consumer_lag_records`; over it, or no
  query reporting at all, fails the task and alerts.
- **report**: both passed; the run's success to the Pushgateway (a failure is
  pushed by the failure callback), so that `DagRunFailed` stops once a run
  succeeds again.

A cron string: Airflow 3 makes it a `CronTriggerTimetable` (no data
interval), which is right here: the checks are about now, not an interval.
No catch-up: a missed hour's answer is worth nothing an hour later.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task

from orchestration.config import settings
from orchestration.dag_defaults import default_args
from orchestration.notifiers import LakehouseNotifier

_AIRFLOW = settings().airflow


@dag(
    dag_id="lakehouse_freshness",
    schedule="0 * * * *",
    start_date=pendulum.datetime(2019, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=50),
    tags=["lakehouse", "freshness", "monitoring"],
    default_args={**default_args(_AIRFLOW), "execution_timeout": timedelta(minutes=20)},
    on_failure_callback=[LakehouseNotifier()],
    doc_md=__doc__,
)
def lakehouse_freshness() -> None:
    @task
    def source_freshness() -> list[dict[str, Any]]:
        from dataclasses import asdict

        from airflow.sdk.exceptions import AirflowFailException

        from orchestration import freshness
        from orchestration.tasks import _spark

        _spark(get_current_context(), catalog=True)  # dbt's session, the lake registered
        results = freshness.source_freshness(settings())
        late = freshness.stale(results)
        if late:
            raise AirflowFailException(
                "stale sources: "
                + "; ".join(
                    f"{r.source} newest row {r.max_loaded_at} ({r.status}, {r.criteria})"
                    for r in late
                )
            )
        return [asdict(r) for r in results]

    @task
    def consumer_lag() -> dict[str, float]:
        from airflow.sdk.exceptions import AirflowFailException

        from orchestration import freshness

        lags = freshness.consumer_lag(settings())
        problems = freshness.lag_problems(lags, _AIRFLOW.max_consumer_lag_records)
        if problems:
            raise AirflowFailException("; ".join(problems))
        return lags

    @task
    def report(sources: list[dict[str, Any]], lags: dict[str, float]) -> dict[str, Any]:
        from orchestration.tasks import push_run_success

        push_run_success(get_current_context())
        return {"sources": len(sources), "max_lag_records": max(lags.values(), default=0.0)}

    report(source_freshness(), consumer_lag())


lakehouse_freshness()
