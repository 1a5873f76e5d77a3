"""The CLI against the real embedded stack, and the clear errors a user can cause."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from core.settings import Settings, settings_env
from streamhouse.cli import app
from streamhouse.runtime.services import SERVICE_NAMES

from .conftest import make_settings

runner = CliRunner()


def invoke(settings: Settings, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in settings_env(settings).items() if k.startswith("STREAMHOUSE_")}
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, " ".join(result.output.split())


def test_status_lists_each_service_with_pid_port_and_health(running_stack: Settings) -> None:
    code, output = invoke(running_stack, "stack", "status")
    assert code == 0, output
    ports = running_stack.runtime.ports
    for name, port in [
        ("postgres", ports.postgres),
        ("kafka", ports.kafka),
        ("registry", ports.registry),
        ("prometheus", ports.prometheus),
        ("alertmanager", ports.alertmanager),
        ("pushgateway", ports.pushgateway),
        ("postgres-exporter", ports.postgres_exporter),
        ("node-exporter", ports.node_exporter),
        ("simulator", running_stack.source.simulator_port),
        ("poller", ports.poller_metrics),
        ("streaming", ports.stream_metrics),
        ("streaming-background", ports.stream_background_metrics),
        ("spark-connect", ports.spark_connect),
        ("airflow-api", ports.airflow_api),
    ]:
        assert f"{name} " in output and f" {port} " in output, output
    # The scheduler, dag-processor and triggerer have no port; the API server reports them.
    assert output.count("ready") == len(SERVICE_NAMES), output
    assert "stopped" not in output
    assert (
        f"dashboards: http://{running_stack.runtime.host}:{ports.prometheus}/consoles/index.html"
        in output
    )


def test_up_twice_reports_running_services(running_stack: Settings) -> None:
    code, output = invoke(running_stack, "stack", "up")
    assert code == 0, output
    assert output.count("already running") == len(SERVICE_NAMES), output
    assert "started nothing (all running)" in output


def test_logs_of_a_service_and_of_an_unknown_one(running_stack: Settings) -> None:
    code, output = invoke(running_stack, "stack", "logs", "kafka", "-n", "20")
    assert code == 0, output[:500]
    assert "INFO" in output, output[:500]
    code, output = invoke(running_stack, "stack", "logs", "zookeeper")
    assert code == 1
    assert "error: Unknown service zookeeper: choose from postgres, kafka, registry" in output
    assert "Traceback" not in output


def test_down_when_nothing_runs(tmp_path: Path) -> None:
    code, output = invoke(make_settings(tmp_path), "stack", "down")
    assert code == 0 and "nothing was running" in output


def test_port_in_use_names_service_and_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = make_settings(tmp_path, runtime={"ports": {"prometheus": port}})
        code, output = invoke(settings, "stack", "up", "prometheus")
    assert code == 1
    assert f"Port {port} that prometheus needs is in use by another process" in output


def test_service_that_exits_names_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "fake-prometheus"
    fake.write_text("#!/bin/sh\necho 'bad flag' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    settings = make_settings(
        tmp_path, runtime={"prometheus_cmd": str(fake), "ports": {"prometheus": free_port()}}
    )
    code, output = invoke(settings, "stack", "up", "prometheus")
    assert code == 1
    log = tmp_path / "prometheus" / "service.log"
    assert f"prometheus exited while starting; its log is {log}" in output
    assert "bad flag" in log.read_text()


def test_service_never_ready_is_stopped_and_named(tmp_path: Path) -> None:
    fake = tmp_path / "slow-prometheus"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    settings = make_settings(
        tmp_path,
        runtime={
            "prometheus_cmd": str(fake),
            "start_timeout_s": 2,
            "ports": {"prometheus": free_port()},
        },
    )
    code, output = invoke(settings, "stack", "up", "prometheus")
    assert code == 1
    assert "prometheus was not ready after 2 s and was stopped; its log is" in output
    code, output = invoke(settings, "stack", "status")
    assert "stopped" in output


def test_missing_java_is_one_sentence(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, runtime={"java_home": str(tmp_path / "no-jdk"), "ports": {"kafka": free_port()}}
    )
    code, output = invoke(settings, "stack", "up", "kafka")
    assert code == 1
    assert f"No java at {tmp_path / 'no-jdk' / 'bin' / 'java'}" in output


def test_old_java_is_refused(tmp_path: Path) -> None:
    jdk = tmp_path / "jdk8" / "bin"
    jdk.mkdir(parents=True)
    (jdk / "java").write_text("#!/bin/sh\necho 'java version \"1.8.0_392\"' >&2\n")
    (jdk / "java").chmod(0o755)
    settings = make_settings(
        tmp_path, runtime={"java_home": str(jdk.parent), "ports": {"kafka": free_port()}}
    )
    code, output = invoke(settings, "stack", "up", "kafka")
    assert code == 1
    assert "Java 8 at" in output and "is too old" in output


def test_maven_resolution_failure_names_the_log(tmp_path: Path) -> None:
    offline_mvn = tmp_path / "mvn"
    offline_mvn.write_text(
        "#!/bin/sh\necho 'Could not transfer artifact: network unreachable'\nexit 1\n"
    )
    offline_mvn.chmod(0o755)
    settings = make_settings(
        tmp_path,
        jar_cache=tmp_path / "jars",
        runtime={"maven_cmd": str(offline_mvn), "ports": {"kafka": free_port()}},
    )
    code, output = invoke(settings, "stack", "up", "kafka")
    assert code == 1
    assert "Maven could not resolve the kafka-" in output
    assert "check the network reaches Maven Central" in output


def test_jars_resolves_without_touching_the_state_dir(tmp_path: Path) -> None:
    """`make install` runs `streamhouse jars` on a fresh checkout, before any state exists."""
    settings = make_settings(tmp_path / "fresh-state")
    code, output = invoke(settings, "jars")
    assert code == 0, output
    assert "kafka: jars ready" in output and "registry: jars ready" in output
    assert not (tmp_path / "fresh-state" / "kafka").exists()


def test_bad_setting_is_one_sentence() -> None:
    result = runner.invoke(
        app, ["stack", "status"], env={"STREAMHOUSE_RUNTIME__PORTS__KAFKA": "not-a-port"}
    )
    assert result.exit_code == 1
    assert "Setting STREAMHOUSE_RUNTIME__PORTS__KAFKA is invalid" in result.output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A developer's .env must not leak into these tests."""
    monkeypatch.chdir(tmp_path)
    assert os.getcwd() == str(tmp_path)


def _run_cli(
    settings: Settings, *args: str, timeout_s: float = 120, secrets: bool = False
) -> tuple[int, str]:
    """The real ``streamhouse`` process (a traceback would show in its output)."""
    import subprocess
    import sys

    from core.settings import PROJECT_ROOT

    result = subprocess.run(
        [sys.executable, "-m", "streamhouse.cli", *args],
        env=settings_env(settings, secrets=secrets),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_poll_with_kafka_or_the_registry_down_is_one_sentence(
    infra_stack: Settings, tmp_path: Path
) -> None:
    kafka_down = infra_stack.model_copy(
        update={
            "kafka": infra_stack.kafka.model_copy(
                update={"bootstrap_servers": f"127.0.0.1:{free_port()}", "init_timeout_s": 3.0}
            )
        }
    )
    registry_down = infra_stack.model_copy(
        update={
            "registry": infra_stack.registry.model_copy(
                update={"url": f"http://127.0.0.1:{free_port()}/apis/ccompat/v7", "timeout_s": 2}
            )
        }
    )
    for settings, names in ((kafka_down, "Kafka at 127.0.0.1"), (registry_down, "the registry")):
        code, output = _run_cli(settings, "poll", "--once")
        assert code == 1, output
        assert "Traceback" not in output, output
        assert "error: The poller cannot publish to Kafka" in output and names in output


def test_marts_and_the_daily_run_with_their_services_down_are_one_sentence(
    tmp_path: Path,
) -> None:
    """A stack that was started once, then stopped: the commands that need its PostgreSQL
    or Airflow say which, before a JVM starts (before: Hive's "Unable to instantiate
    SessionHiveMetaStoreClient" as a traceback, after 9-47 s)."""
    from lake.tables import BRONZE_QUAKE_CHANGES, QUAKE_WINDOWS_1H, QUAKE_WINDOWS_1M, SILVER_QUAKES
    from spark_jobs.session import spark_log_file

    base = make_settings(tmp_path / "state")
    settings = base.model_copy(
        update={
            "lake_root": str(tmp_path / "lake"),
            "runtime": base.runtime.model_copy(
                update={
                    "ports": base.runtime.ports.model_copy(
                        update={"postgres": free_port(), "airflow_api": free_port()}
                    )
                }
            ),
            # What the first start generated and left in the state directory.
            "catalog": base.catalog.model_copy(update={"password": SecretStr("generated")}),
            "airflow": base.airflow.model_copy(update={"admin_password": SecretStr("generated")}),
        }
    )
    # The stream wrote the marts' sources before the stack stopped.
    for table in (BRONZE_QUAKE_CHANGES, SILVER_QUAKES, QUAKE_WINDOWS_1M, QUAKE_WINDOWS_1H):
        (Path(table.path(settings.lake_uri)) / "_delta_log").mkdir(parents=True)
    host, port = settings.postgres_address

    for command in (
        ["marts", "build", "--start", "2019-02-14"],
        ["marts", "verify-idempotent"],
        ["catalog", "tables"],
    ):
        code, output = _run_cli(settings, *command, secrets=True)
        assert code == 1, output
        assert "Traceback" not in output, output
        assert f"error: The catalog's PostgreSQL at {host}:{port} did not answer" in output
        assert "`streamhouse stack up postgres`" in output

    code, output = _run_cli(settings, "airflow", "run-daily", "--date", "2019-02-14", secrets=True)
    assert code == 1, output
    assert "Traceback" not in output, output
    assert f"error: Airflow's API at {settings.airflow_url} did not answer" in output
    assert not spark_log_file(settings, "streamhouse-proof").exists(), "a JVM started first"
