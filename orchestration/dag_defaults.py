"""What every lakehouse DAG shares: owner, retries with exponential backoff, timeouts and
the failure notifier on each task, all from the ``airflow`` settings read at parse time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.settings import AirflowSettings
from orchestration.notifiers import LakehouseNotifier

OWNER = "data-platform"


def default_args(airflow: AirflowSettings) -> dict[str, Any]:
    """``default_args`` of a lakehouse DAG.

    A data failure (a failed expectation, a reconciliation difference, a
    sensor's timeout) fails its task at once (``AirflowFailException`` or
    ``AirflowSensorTimeout``): trying again would find the same data.
    Everything else (a Spark or metastore hiccup) is retried.
    """
    return {
        "owner": OWNER,
        "retries": airflow.retries,
        "retry_delay": timedelta(seconds=airflow.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(seconds=airflow.max_retry_delay_s),
        "execution_timeout": timedelta(seconds=airflow.task_timeout_s),
        "on_failure_callback": [LakehouseNotifier()],
    }
