"""Airflow's API client when nothing answers at its address: one sentence, from the first
call (its sign-in) on, and from ``health``, which ``airflow run-daily`` asks before it starts
a JVM for its proof.
"""

from __future__ import annotations

import socket

import pytest

from core.errors import UserFacingError
from orchestration.api_client import AirflowApi


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_stopped_airflow_is_one_sentence_from_the_first_call() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    api = AirflowApi(url, "admin", "generated", timeout_s=2.0)
    expected = rf"^Airflow's API at {url} did not answer"
    with pytest.raises(UserFacingError, match=expected):
        api.run("lakehouse_daily", "manual__1")  # the first call signs in
    with pytest.raises(UserFacingError, match=expected):
        api.health()
