"""The Airflow plugin that serves Airflow's health to Prometheus (``[core] plugins_folder``).

The API server mounts its FastAPI app at ``/streamhouse``: ``GET /streamhouse/metrics``
answers what ``/api/v2/monitor/health`` reads from the metadata database (each
component's latest heartbeat), each DAG's paused flag and when its newest successful
and failed runs ended, in Prometheus' text format (``monitoring/airflow_health.py``).
Like the other ``/metrics`` endpoints of the stack it needs no login: it says only
whether components are alive and when runs ended, and binds where the API server binds
(the runtime's host, 127.0.0.1 by default).
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Response

app = FastAPI(title="streamhouse metrics", docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/metrics")
def metrics() -> Response:
    """Sync on purpose: FastAPI runs it in its thread pool, off the event loop."""
    # Imported here, not with the module: any Airflow process that loads plugins would
    # otherwise import the job runners (0.3 s) for nothing.
    from airflow.api.common.airflow_health import get_airflow_health
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from prometheus_client import CONTENT_TYPE_LATEST
    from sqlalchemy import func, select

    from monitoring.airflow_health import FINAL_STATES, render

    health = get_airflow_health()
    with create_session() as session:
        paused = [
            (str(dag_id), bool(is_paused))
            for dag_id, is_paused in session.execute(
                select(DagModel.dag_id, DagModel.is_paused).where(~DagModel.is_stale)
            )
        ]
        # One row per DAG and final state, from dag_run's (dag_id, state) index.
        ends = [
            (str(dag_id), str(state), end)
            for dag_id, state, end in session.execute(
                select(DagRun.dag_id, DagRun.state, func.max(DagRun.end_date))
                .where(DagRun.state.in_(FINAL_STATES), DagRun.end_date.is_not(None))
                .group_by(DagRun.dag_id, DagRun.state)
            )
        ]
    return Response(render(health, paused, datetime.now(UTC), ends), media_type=CONTENT_TYPE_LATEST)


class StreamhouseMetricsPlugin(AirflowPlugin):
    """Registers the app with the API server."""

    name = "streamhouse_metrics"
    fastapi_apps = [{"app": app, "url_prefix": "/streamhouse", "name": "streamhouse metrics"}]
