"""The Spark Connect server's address, token and settings, and where the tasks' Spark runs: pure
logic, no service (tests/integration/test_spark_connect.py runs the server)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.errors import UserFacingError
from core.settings import Settings
from spark_jobs.connect import (
    client_url,
    connect_session,
    is_serving,
    server_config,
    server_token,
    serving_file,
    token_file,
)
from streamhouse.runtime.services import build_services
from streamhouse.runtime.stack import with_dependencies


def test_a_loopback_server_is_reached_as_localhost_so_the_token_may_go_without_tls() -> None:
    settings = Settings(runtime={"ports": {"spark_connect": 25002}})
    assert client_url(settings) == "sc://localhost:25002"
    elsewhere = Settings(runtime={"host": "10.1.2.3"})
    assert client_url(elsewhere) == "sc://10.1.2.3:15002"
    cluster = Settings(spark={"connect_url": "sc://spark.example:443/;use_ssl=true"})
    assert client_url(cluster) == "sc://spark.example:443/;use_ssl=true"


def test_the_token_is_generated_once_owner_only_and_a_setting_wins(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    token = server_token(settings)
    assert token is not None and len(token) >= 40
    assert server_token(settings) == token  # the same on every call: the file keeps it
    path = token_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    given = Settings(state_dir=tmp_path, spark={"connect_token": SecretStr("from-settings")})
    assert server_token(given) == "from-settings"
    assert server_token(Settings(state_dir=tmp_path, spark={"connect_auth": False})) is None


def test_the_server_is_serving_only_by_its_own_word(tmp_path: Path) -> None:
    """Ready = the running server's pid in the file it writes once its driver is built; a
    file left by an earlier server, or none, is not ready."""
    settings = Settings(state_dir=tmp_path)
    assert not is_serving(settings, 4242)
    serving_file(settings).parent.mkdir(parents=True)
    serving_file(settings).write_text("4242\n")
    assert is_serving(settings, 4242)
    assert not is_serving(settings, 4343)  # a restarted server has not said so yet
    assert not is_serving(settings, None)  # no server running
    serving_file(settings).write_text("")
    assert not is_serving(settings, 4242)


def test_the_server_binds_where_the_settings_say() -> None:
    config = server_config(Settings(runtime={"ports": {"spark_connect": 25002}}))
    assert config["spark.plugins"] == "org.apache.spark.sql.connect.SparkConnectPlugin"
    assert config["spark.connect.grpc.binding.address"] == "127.0.0.1"
    assert config["spark.connect.grpc.binding.port"] == "25002"


def test_the_scheduler_starts_after_the_server_its_tasks_run_on() -> None:
    specs = build_services(Settings())
    order = with_dependencies(specs, ["airflow-scheduler"])
    assert order.index("spark-connect") < order.index("airflow-scheduler")
    assert "postgres" in with_dependencies(specs, ["spark-connect"])
    own_drivers = build_services(Settings(spark={"tasks_on_connect": False}))
    assert "spark-connect" not in with_dependencies(own_drivers, ["airflow-scheduler"])


def test_a_server_that_does_not_answer_is_one_sentence_naming_the_service_and_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SPARK_REMOTE", "SPARK_CONNECT_AUTHENTICATE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # A port nothing listens on (the test stacks use offsets of 10000 and 15000).
    settings = Settings(state_dir=tmp_path, runtime={"ports": {"spark_connect": 1}})
    with pytest.raises(UserFacingError) as raised:
        connect_session(settings, "unit")
    message = str(raised.value)
    assert "sc://localhost:1 did not answer" in message
    assert "streamhouse stack up spark-connect" in message
    assert str(tmp_path / "spark-connect" / "service.log") in message
