"""Airflow's health answer as Prometheus metrics (monitoring/airflow_health.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from monitoring.airflow_health import (
    COMPONENT_HEALTHY,
    DAG_PAUSED,
    HEARTBEAT_AGE,
    LAST_RUN_END,
    render,
)

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _samples(text: bytes) -> dict[tuple[str, str], float]:
    return {
        (sample.name, next(iter(sample.labels.values()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_each_component_s_state_and_the_age_of_its_heartbeat() -> None:
    """As /api/v2/monitor/health answers (Airflow 3.3): a triggerer whose heartbeat is late,
    a DAG processor that never ran (status None)."""
    health = {
        "metadatabase": {"status": "healthy"},
        "scheduler": {
            "status": "healthy",
            "latest_scheduler_heartbeat": (NOW - timedelta(seconds=4)).isoformat(),
        },
        "triggerer": {
            "status": "unhealthy",
            "latest_triggerer_heartbeat": (NOW - timedelta(minutes=3)).isoformat(),
        },
        "dag_processor": {"status": None, "latest_dag_processor_heartbeat": None},
    }
    samples = _samples(
        render(health, [("lakehouse_daily", False), ("lakehouse_replay", True)], NOW)
    )
    assert samples == {
        (COMPONENT_HEALTHY, "metadatabase"): 1.0,
        (COMPONENT_HEALTHY, "scheduler"): 1.0,
        (COMPONENT_HEALTHY, "dag_processor"): 0.0,
        (COMPONENT_HEALTHY, "triggerer"): 0.0,
        (HEARTBEAT_AGE, "scheduler"): 4.0,
        (HEARTBEAT_AGE, "triggerer"): 180.0,
        (DAG_PAUSED, "lakehouse_daily"): 0.0,
        (DAG_PAUSED, "lakehouse_replay"): 1.0,
    }


def test_a_database_that_does_not_answer_leaves_every_component_unhealthy() -> None:
    """Airflow answers unhealthy with no heartbeat when it cannot read its database."""
    health = {
        "metadatabase": {"status": "unhealthy"},
        "scheduler": {"status": "unhealthy", "latest_scheduler_heartbeat": None},
    }
    samples = _samples(render(health, [], NOW))
    assert {k: v for k, v in samples.items() if k[0] == COMPONENT_HEALTHY} == {
        (COMPONENT_HEALTHY, c): 0.0
        for c in ("metadatabase", "scheduler", "dag_processor", "triggerer")
    }
    assert not [k for k in samples if k[0] == HEARTBEAT_AGE]


def test_each_dag_s_newest_end_per_final_state() -> None:
    """The (dag_id, state, end) rows the plugin reads from dag_run: one series per DAG and
    final state, the end as unix time; a state that is not final is no series."""
    ends = [
        ("lakehouse_freshness", "success", NOW - timedelta(minutes=55)),
        ("lakehouse_freshness", "failed", NOW - timedelta(days=2)),
        ("lakehouse_daily", "success", NOW - timedelta(hours=7)),
        ("lakehouse_daily", "running", NOW),
    ]
    text = render({}, [], NOW, ends).decode()
    samples = {
        (sample.labels["dag_id"], sample.labels["state"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == LAST_RUN_END
    }
    assert samples == {
        ("lakehouse_freshness", "success"): NOW.timestamp() - 55 * 60,
        ("lakehouse_freshness", "failed"): NOW.timestamp() - 2 * 86400,
        ("lakehouse_daily", "success"): NOW.timestamp() - 7 * 3600,
    }
