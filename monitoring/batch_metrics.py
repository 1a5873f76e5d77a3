"""The metrics contract of the batch jobs, and the functions they call to honour it.

Batch work (the Airflow DAGs, Great Expectations validations, dbt builds)
does not live long enough to be scraped. Each run pushes its *last result* to
a Prometheus Pushgateway (``settings.pushgateway_url``), the pattern the
Prometheus documentation gives for service-level batch jobs; Prometheus
scrapes the gateway with ``honor_labels`` so the pushed ``job`` label stays.

One Pushgateway group per DAG, suite or mart model: each push replaces that
group's metrics, so the gateway always holds exactly the last run and
nothing accumulates. Values are timestamps and outcomes, never ages or
counters, because a pushed value stays as it was until the next push: the
panels compute ages with ``time() - …``.

Metrics (labels in brackets; the table with their meaning is in monitoring/README.md):

- ``streamhouse_dag_last_run_success`` [dag_id]: 1 the last finished run succeeded, 0 it failed;
  ``…_finished_timestamp_seconds``, ``…_duration_seconds`` of that run.
- ``streamhouse_quality_last_validation_success`` [suite]: 1 every expectation passed;
  ``…_expectations`` [suite, outcome=passed|failed], ``…_timestamp_seconds``.
- ``streamhouse_mart_build_latency_seconds`` [model, quantile=0.5|0.95|0.99]: produced-at to
  build commit of the versions the last build delivered (``marts/delivery.py``);
  ``streamhouse_mart_newest_data_timestamp_seconds``,
  ``streamhouse_mart_last_build_rows``, ``streamhouse_mart_last_build_finished_timestamp_seconds``
  [model].

Pushgateway jobs: ``airflow`` (grouped by ``dag_id``), ``great_expectations``
(``suite``), ``dbt`` (``model``). A failed push raises ``MetricsPushError``;
the caller decides whether monitoring being down fails its task (the DAGs
log it and go on).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import delete_from_gateway, push_to_gateway

from core.settings import Settings

DAG_JOB = "airflow"
QUALITY_JOB = "great_expectations"
MART_JOB = "dbt"

DAG_RUN_SUCCESS = "streamhouse_dag_last_run_success"
DAG_RUN_FINISHED = "streamhouse_dag_last_run_finished_timestamp_seconds"
DAG_RUN_DURATION = "streamhouse_dag_last_run_duration_seconds"
QUALITY_SUCCESS = "streamhouse_quality_last_validation_success"
QUALITY_EXPECTATIONS = "streamhouse_quality_last_validation_expectations"
QUALITY_FINISHED = "streamhouse_quality_last_validation_timestamp_seconds"
MART_LATENCY = "streamhouse_mart_build_latency_seconds"
MART_NEWEST_DATA = "streamhouse_mart_newest_data_timestamp_seconds"
MART_ROWS = "streamhouse_mart_last_build_rows"
MART_FINISHED = "streamhouse_mart_last_build_finished_timestamp_seconds"

MART_QUANTILES = (0.5, 0.95, 0.99)
PUSH_TIMEOUT_S = 10.0


class MetricsPushError(RuntimeError):
    """The Pushgateway did not take a batch job's result."""


def _unix(moment: datetime | float) -> float:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError(f"{moment} has no time zone: pass an aware datetime (UTC)")
        return moment.timestamp()
    return float(moment)


def _push(
    settings: Settings, job: str, grouping: dict[str, str], registry: CollectorRegistry
) -> None:
    try:
        push_to_gateway(
            settings.pushgateway_url,
            job=job,
            registry=registry,
            grouping_key=grouping,
            timeout=PUSH_TIMEOUT_S,
        )
    except OSError as error:  # URLError, HTTPError and timeouts are all OSErrors
        raise MetricsPushError(
            f"the Pushgateway at {settings.pushgateway_url} did not take the {job} result "
            f"{grouping} ({error}); start it with `streamhouse stack up pushgateway` or set "
            "STREAMHOUSE_MONITORING__PUSHGATEWAY_URL."
        ) from error


def push_dag_run(
    settings: Settings,
    *,
    dag_id: str,
    success: bool,
    started_at: datetime | float,
    finished_at: datetime | float,
) -> None:
    """Publish the outcome of a DAG run that just finished (its last state)."""
    registry = CollectorRegistry()
    Gauge(
        DAG_RUN_SUCCESS,
        "1 when the DAG's last finished run succeeded, 0 when it failed",
        registry=registry,
    ).set(int(success))
    Gauge(DAG_RUN_FINISHED, "When the DAG's last run finished (unix time)", registry=registry).set(
        _unix(finished_at)
    )
    Gauge(DAG_RUN_DURATION, "How long the DAG's last run took", registry=registry).set(
        max(0.0, _unix(finished_at) - _unix(started_at))
    )
    _push(settings, DAG_JOB, {"dag_id": dag_id}, registry)


def push_quality_result(
    settings: Settings,
    *,
    suite: str,
    passed: int,
    failed: int,
    finished_at: datetime | float,
) -> None:
    """Publish the result of a validation (one suite): success means no expectation failed."""
    if passed < 0 or failed < 0:
        raise ValueError("expectation counts cannot be negative")
    registry = CollectorRegistry()
    Gauge(
        QUALITY_SUCCESS,
        "1 when every expectation of the suite's last validation passed",
        registry=registry,
    ).set(int(failed == 0))
    expectations = Gauge(
        QUALITY_EXPECTATIONS,
        "Expectations of the suite's last validation, by outcome",
        ["outcome"],
        registry=registry,
    )
    expectations.labels("passed").set(passed)
    expectations.labels("failed").set(failed)
    Gauge(
        QUALITY_FINISHED, "When the suite's last validation finished (unix time)", registry=registry
    ).set(_unix(finished_at))
    _push(settings, QUALITY_JOB, {"suite": suite}, registry)


def push_mart_build(
    settings: Settings,
    *,
    model: str,
    finished_at: datetime | float,
    newest_data_at: datetime | float,
    rows: int,
    latency_quantiles_s: Mapping[float, float],
) -> None:
    """Publish a mart build: its rows, its data's newest produced-at and the latency quantiles.

    ``latency_quantiles_s`` maps 0.5, 0.95 and 0.99 to the build commit time
    minus ``produced_at`` over the rows the build delivered (``marts.delivery``:
    Spark's ``percentile_approx`` over its new versions; NaN when there were none).
    """
    missing = [q for q in MART_QUANTILES if q not in latency_quantiles_s]
    if missing:
        raise ValueError(f"latency quantiles {missing} are missing; give {MART_QUANTILES}")
    registry = CollectorRegistry()
    latency = Gauge(
        MART_LATENCY,
        "Produced-at to build commit of the rows the mart's last build wrote",
        ["quantile"],
        registry=registry,
    )
    for quantile in MART_QUANTILES:
        latency.labels(str(quantile)).set(latency_quantiles_s[quantile])
    Gauge(MART_NEWEST_DATA, "Newest produced-at the mart holds (unix time)", registry=registry).set(
        _unix(newest_data_at)
    )
    Gauge(MART_ROWS, "Rows the mart's last build wrote", registry=registry).set(rows)
    Gauge(MART_FINISHED, "When the mart's last build committed (unix time)", registry=registry).set(
        _unix(finished_at)
    )
    _push(settings, MART_JOB, {"model": model}, registry)


def forget(settings: Settings, job: str, grouping: dict[str, str]) -> None:
    """Remove a group from the Pushgateway (a DAG, suite or model that no longer exists)."""
    try:
        delete_from_gateway(
            settings.pushgateway_url, job=job, grouping_key=grouping, timeout=PUSH_TIMEOUT_S
        )
    except OSError as error:
        raise MetricsPushError(
            f"the Pushgateway at {settings.pushgateway_url} did not delete {job} {grouping} "
            f"({error})."
        ) from error
