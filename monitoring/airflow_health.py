"""Airflow's own health as Prometheus metrics (pure: the health and the DAGs in, text out).

Airflow 3 sends its internal metrics by StatsD or OTLP only, and neither a StatsD
exporter nor an OTLP receiver (Prometheus 2.47+) is among this machine's
packages. What an operator needs first is whether each component is alive, and
the API server already knows: ``/api/v2/monitor/health`` reads each component's
latest heartbeat from the metadata database. The plugin in
``orchestration/airflow_plugins/`` serves the same answer, with the DAGs' paused
flags and when each DAG's newest run of each final state ended, at
``/streamhouse/metrics`` on the API server's port, in Prometheus' format;
``render`` builds that text.

The run ends come from Airflow's own table, not from a push by the DAG: a DAG
whose runs never start (scheduler down, DAG paused) or never finish (a sensor
never satisfied) has no task left to push anything, and an alert on the age of
its newest end is its dead man's switch (``FreshnessCheckOverdue``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

COMPONENT_HEALTHY = "streamhouse_airflow_component_healthy"
HEARTBEAT_AGE = "streamhouse_airflow_heartbeat_age_seconds"
DAG_PAUSED = "streamhouse_airflow_dag_paused"
LAST_RUN_END = "streamhouse_airflow_dag_last_run_end_timestamp_seconds"
#: The final states of a DAG run whose newest end is exported.
FINAL_STATES = ("success", "failed")
#: The components of ``get_airflow_health()``; the metadata database has no heartbeat.
COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")


def render(
    health: Mapping[str, Mapping[str, Any]],
    paused: Iterable[tuple[str, bool]],
    now: datetime,
    last_run_ends: Iterable[tuple[str, str, datetime]] = (),
) -> bytes:
    """The exposition text of ``health`` (Airflow's health answer), the DAGs' paused flags
    and ``last_run_ends``: (dag_id, state, end) of each DAG's newest run in each final state.

    A component Airflow reports no job of (``status`` None: it never ran) is unhealthy
    here: the stack runs every component, so one that never started is down.
    """
    registry = CollectorRegistry()
    healthy = Gauge(
        COMPONENT_HEALTHY,
        "1 when Airflow reports the component healthy (its job running, a recent heartbeat)",
        ["component"],
        registry=registry,
    )
    age = Gauge(
        HEARTBEAT_AGE,
        "Seconds since the component's latest heartbeat in the metadata database",
        ["component"],
        registry=registry,
    )
    for component in COMPONENTS:
        answer = health.get(component) or {}
        healthy.labels(component).set(1 if answer.get("status") == "healthy" else 0)
        beat = answer.get(f"latest_{component}_heartbeat")
        if beat:
            age.labels(component).set(
                max(0.0, (now - datetime.fromisoformat(beat)).total_seconds())
            )
    dags = Gauge(
        DAG_PAUSED,
        "1 when the DAG is paused (its runs are not scheduled)",
        ["dag_id"],
        registry=registry,
    )
    for dag_id, is_paused in paused:
        dags.labels(dag_id).set(int(is_paused))
    ends = Gauge(
        LAST_RUN_END,
        "Unix time the DAG's newest run in this final state ended (Airflow's metadata database)",
        ["dag_id", "state"],
        registry=registry,
    )
    for dag_id, state, end in last_run_ends:
        if state in FINAL_STATES:
            ends.labels(dag_id, state).set(end.timestamp())
    return generate_latest(registry)
