"""### lakehouse_replay: replay a range and prove it equals the live tables

Manual only. The params name a range: bronze rows by ingestion time, or
Kafka records by timestamp (empty bounds: everything).

1. **replay**: the range through the stream's own transforms into the side
   tables (`<layer>_replay`; the live tables are never rewritten from here),
   as `streamhouse replay bronze|kafka` does.
2. **reconcile**: every difference between the live silver and window tables
   and the replay, within what the range touched; any difference fails the
   task (no retry: the data would not change) and alerts. No difference: the
   run's success to the Pushgateway.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from orchestration.config import settings
from orchestration.dag_defaults import default_args
from orchestration.notifiers import LakehouseNotifier

_AIRFLOW = settings().airflow


@dag(
    dag_id="lakehouse_replay",
    schedule=None,
    start_date=pendulum.datetime(2019, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(seconds=_AIRFLOW.task_timeout_s * 2),
    tags=["lakehouse", "replay", "reconciliation"],
    params={
        "source": Param(
            "bronze",
            type="string",
            enum=["bronze", "kafka"],
            description="bronze: rows by ingestion time; kafka: records by Kafka timestamp.",
        ),
        "from_time": Param(
            None,
            type=["null", "string"],
            format="date-time",
            description="Start of the range (ISO 8601, inclusive); empty: from the beginning.",
        ),
        "to_time": Param(
            None,
            type=["null", "string"],
            format="date-time",
            description="End of the range (ISO 8601, exclusive); empty: up to now.",
        ),
        "closed_before": Param(
            None,
            type=["null", "string"],
            format="date-time",
            description="Compare only windows that end before this time (later ones are open).",
        ),
    },
    default_args=default_args(_AIRFLOW),
    on_failure_callback=[LakehouseNotifier()],
    doc_md=__doc__,
)
def lakehouse_replay() -> None:
    @task
    def replay() -> dict[str, int]:
        from orchestration.replay import ReplayRange, run_replay
        from orchestration.tasks import _spark

        context = get_current_context()
        span = ReplayRange.from_params(dict(context["params"]))
        # Its own driver: the replay runs Structured Streaming and Delta's Python API,
        # which a Spark Connect client cannot (spark_jobs/connect.py).
        return run_replay(_spark(context, remote=False), settings(), span)

    @task
    def reconcile(counts: dict[str, int]) -> dict[str, Any]:
        from datetime import datetime

        from airflow.sdk.exceptions import AirflowFailException

        from orchestration.replay import ReplayRange, describe, reconcile_range
        from orchestration.tasks import _spark

        context = get_current_context()
        params = dict(context["params"])
        span = ReplayRange.from_params(params)
        closed = params.get("closed_before")
        differences = reconcile_range(
            _spark(context, remote=False),  # replays the range's windows: as above
            settings(),
            span,
            datetime.fromisoformat(closed) if closed else None,
        )
        if differences:
            raise AirflowFailException(describe(differences))
        from orchestration.tasks import push_run_success

        push_run_success(context)
        return {"replayed": counts, "differences": 0}

    reconcile(replay())


lakehouse_replay()
