"""The batch jobs' metrics library: what it refuses, and a clear error when the gateway is away.

Pushing to a real Pushgateway and reading the result back in Prometheus is
tested against the stack (tests/integration/test_dashboards.py,
test_alerting.py).
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from core.settings import Settings
from monitoring import batch_metrics


def _unreachable() -> Settings:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    return Settings(_env_file=None, monitoring={"pushgateway_url": f"http://127.0.0.1:{port}"})  # type: ignore[call-arg]


def test_an_unreachable_gateway_is_one_sentence_saying_what_to_do() -> None:
    settings = _unreachable()
    with pytest.raises(batch_metrics.MetricsPushError) as raised:
        batch_metrics.push_dag_run(
            settings, dag_id="d", success=True, started_at=0.0, finished_at=1.0
        )
    message = str(raised.value)
    assert settings.pushgateway_url in message
    assert "streamhouse stack up pushgateway" in message


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        batch_metrics.push_quality_result(
            _unreachable(), suite="s", passed=1, failed=0, finished_at=datetime(2026, 12, 4)
        )


def test_mart_latency_needs_every_quantile() -> None:
    with pytest.raises(ValueError, match=r"\[0.99\] are missing"):
        batch_metrics.push_mart_build(
            _unreachable(),
            model="fct_quakes",
            finished_at=datetime.now(UTC),
            newest_data_at=datetime.now(UTC),
            rows=1,
            latency_quantiles_s={0.5: 1.0, 0.95: 2.0},
        )


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        batch_metrics.push_quality_result(
            _unreachable(), suite="s", passed=-1, failed=0, finished_at=0.0
        )


def test_the_default_gateway_is_the_embedded_runtime_s() -> None:
    settings = Settings(_env_file=None, runtime={"ports": {"pushgateway": 19091}})  # type: ignore[call-arg]
    assert settings.pushgateway_url == "http://127.0.0.1:19091"
