"""Pure logic of the embedded runtime: no service needed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.errors import UserFacingError
from core.jars import Coordinate, bundle_fingerprint
from core.settings import DEFAULT_TRIGGER_OVERRIDES, Settings, settings_env
from streamhouse.runtime import process
from streamhouse.runtime.java import parse_major_version
from streamhouse.runtime.maven import render_pom
from streamhouse.runtime.services import (
    SERVICE_NAMES,
    ServiceSpec,
    build_services,
    kafka_server_properties,
)
from streamhouse.runtime.stack import (
    check_service_names,
    service_paths,
    start_all,
    with_dependencies,
)


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "25" 2025-09-16', 25),
    ],
)
def test_java_major_version(output: str, major: int) -> None:
    assert parse_major_version(output) == major


def test_java_version_unreadable() -> None:
    with pytest.raises(ValueError, match="cannot read a Java version"):
        parse_major_version("command not found")


def test_coordinate_round_trip() -> None:
    coord = Coordinate.parse("io.apicurio:apicurio-registry-app:3.0.9:tar.gz:all")
    assert (coord.packaging, coord.classifier) == ("tar.gz", "all")
    assert str(coord) == "io.apicurio:apicurio-registry-app:3.0.9:tar.gz:all"
    with pytest.raises(ValueError, match="not a Maven coordinate"):
        Coordinate.parse("just-a-name")


def test_pom_lists_each_dependency_with_exclusions() -> None:
    pom = render_pom(
        "b", [Coordinate.parse("g:a:1", exclusions=("x:y",)), Coordinate.parse("g:c:2")]
    )
    assert pom.count("<dependency>") == 2
    assert "<exclusion><groupId>x</groupId><artifactId>y</artifactId></exclusion>" in pom


def test_fingerprint_changes_with_coordinates_and_filters() -> None:
    base = [Coordinate.parse("g:a:1")]
    assert bundle_fingerprint(base) == bundle_fingerprint(list(base))
    assert bundle_fingerprint(base) != bundle_fingerprint([Coordinate.parse("g:a:2")])
    assert bundle_fingerprint(base) != bundle_fingerprint(base, ("io.delta",))


def test_kafka_properties_follow_settings(tmp_path: Path) -> None:
    settings = Settings(runtime={"ports": {"kafka": 19092, "kafka_controller": 19093}})
    props = kafka_server_properties(settings, tmp_path)
    assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in props
    assert f"log.dirs={tmp_path}" in props
    assert "process.roles=broker,controller" in props


def test_dependencies_come_first() -> None:
    specs = build_services(Settings())
    assert with_dependencies(specs, ["poller"]) == ["kafka", "registry", "simulator", "poller"]
    assert with_dependencies(specs, []) == []
    assert with_dependencies(specs, list(SERVICE_NAMES)) == list(SERVICE_NAMES)


def test_unknown_service_name_is_one_sentence() -> None:
    with pytest.raises(UserFacingError, match="Unknown service nope: choose from postgres, kafka"):
        check_service_names(["kafka", "nope"])


def test_settings_env_round_trips() -> None:
    settings = Settings(
        kafka={"changes_topic": "t1"},
        runtime={"ports": {"registry": 18081}},
        spark={"trigger_overrides": {"silver_quakes": "5 seconds"}},
    )
    env = {k: v for k, v in settings_env(settings).items() if k.startswith("STREAMHOUSE_")}
    assert env["STREAMHOUSE_SPARK__TRIGGER_OVERRIDES__SILVER_QUAKES"] == "5 seconds"
    assert env["STREAMHOUSE_KAFKA__CHANGES_TOPIC"] == "t1"
    assert env["STREAMHOUSE_RUNTIME__PORTS__REGISTRY"] == "18081"
    mp = pytest.MonkeyPatch()
    try:
        for key, value in env.items():
            mp.setenv(key, value)
        assert Settings() == settings
    finally:
        mp.undo()


def test_one_trigger_override_keeps_the_other_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # pydantic-settings built the dict from the variables alone: setting one
    # query's trigger put silver back on the 1 s default.
    monkeypatch.setenv(
        "STREAMHOUSE_SPARK__TRIGGER_OVERRIDES__AGGREGATES_QUAKE_WINDOWS_1M", "5 seconds"
    )
    settings = Settings()
    assert settings.trigger_for("aggregates_quake_windows_1m") == "5 seconds"
    assert settings.trigger_for("silver_quakes") == DEFAULT_TRIGGER_OVERRIDES["silver_quakes"]


def test_trigger_per_query_falls_back_to_the_trigger_interval() -> None:
    settings = Settings(
        spark={"trigger_interval": "3 seconds", "trigger_overrides": {"silver_quakes": "1 minute"}}
    )
    assert settings.trigger_for("silver_quakes") == "1 minute"
    assert settings.trigger_for("bronze_quake_changes") == "3 seconds"


def test_spawned_process_is_found_and_stopped_by_pid(tmp_path: Path) -> None:
    paths = process.ServicePaths(tmp_path / "svc")
    pid = process.spawn(paths, [sys.executable, "-c", "import time; time.sleep(60)"], {})
    assert process.read_pid(paths) == pid
    assert process.rss_bytes(pid) > 0
    assert process.stop(paths, timeout_s=5)
    assert process.read_pid(paths) is None
    assert not process.stop(paths, timeout_s=5), "stopping twice must report nothing running"


def test_a_descendant_in_a_session_of_its_own_is_stopped_with_the_service(
    tmp_path: Path,
) -> None:
    """Airflow's task supervisors call setsid: stopping the scheduler must not orphan them."""
    paths = process.ServicePaths(tmp_path / "svc")
    pid_file = tmp_path / "child.pid"
    child = (
        "import os, time; os.setsid(); "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    )
    parent = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); "
        "time.sleep(120)"
    )
    process.spawn(paths, [sys.executable, "-c", parent], {})
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)
    orphan = int(pid_file.read_text())
    assert os.getsid(orphan) == orphan, "the child must have left the service's session"
    assert process.stop(paths, timeout_s=5)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{orphan}").exists() and process._proc_start_ticks(orphan) is not None:
        assert time.monotonic() < deadline, "the service's descendant outlived its stop"
        time.sleep(0.1)


def test_a_stopped_service_of_ours_is_reaped_and_its_group_ended_without_sitting_out_the_grace(
    tmp_path: Path,
) -> None:
    """A service this process started exits as a zombie until it is reaped: the stop must
    not count it as a member of its group still running (every test session's stack down
    sat out a 10 s grace per service), and must still end a member that is running."""
    paths = process.ServicePaths(tmp_path / "svc")
    member_file = tmp_path / "member.pid"
    leader = (
        "import subprocess, sys, time; "
        "m = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        f"open({str(member_file)!r}, 'w').write(str(m.pid)); time.sleep(120)"
    )
    pid = process.spawn(paths, [sys.executable, "-c", leader], {})
    deadline = time.monotonic() + 10
    while not member_file.exists() or not member_file.read_text():
        assert time.monotonic() < deadline, "the group's member did not start"
        time.sleep(0.05)
    member = int(member_file.read_text())
    assert pid in process.live_group_members(pid) and member in process.live_group_members(pid)
    began = time.monotonic()
    assert process.stop(paths, timeout_s=5)
    assert time.monotonic() - began < 5, "the stop waited out the grace on a zombie"
    assert process.live_group_members(pid) == []
    assert not Path(f"/proc/{pid}").exists(), "the service's process was not reaped"


def test_reused_pid_is_not_taken_for_the_service(tmp_path: Path) -> None:
    paths = process.ServicePaths(tmp_path / "svc")
    paths.ensure()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # Same pid, different start time: a pid reused by an unrelated process.
        paths.pid_file.write_text(f"{other.pid} 1\n")
        assert process.read_pid(paths) is None
        assert not process.stop(paths, timeout_s=1)
        assert other.poll() is None, "an unrelated process must never be killed"
    finally:
        other.kill()
        other.wait()


def test_port_in_use_detection() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert process.port_in_use("127.0.0.1", port)
    time.sleep(0.05)
    assert not process.port_in_use("127.0.0.1", port)


def test_one_checkpoint_per_sink_under_a_configurable_root() -> None:
    settings = Settings(lake_root="s3a://lake/sh")
    assert settings.checkpoint_dir("bronze", "quake_changes") == (
        "s3a://lake/sh/_checkpoints/bronze/quake_changes"
    )
    moved = Settings(lake_root="s3a://lake/sh", checkpoint_root="s3a://cp/")
    assert moved.checkpoint_dir("aggregates", "w1m") == "s3a://cp/aggregates/w1m"


def test_the_two_streaming_drivers_run_every_query_once() -> None:
    """Ingest and the minute windows alone in one driver; the MERGE-heavy rest in the other."""
    from spark_jobs.streams import JOBS
    from streamhouse.runtime.services import STREAM_DRIVERS

    assigned = [job for jobs in STREAM_DRIVERS.values() for job in jobs]
    assert sorted(assigned) == sorted(JOBS)
    specs = build_services(Settings())
    foreground = specs["streaming"].prepare(process.ServicePaths.__new__(process.ServicePaths))
    background = specs["streaming-background"].prepare(
        process.ServicePaths.__new__(process.ServicePaths)
    )
    assert foreground[-3:] == ["run", "bronze", "windows"]
    assert background[-5:] == ["run", "late", "silver", "rollup", "--background"]
    assert "streaming" in specs["streaming-background"].depends_on
    assert set(STREAM_DRIVERS["streaming"]) == {"bronze", "windows"}


def test_purging_the_stack_leaves_nothing_a_fresh_start_would_trip_on(tmp_path: Path) -> None:
    """`stack down --purge` with no service named: Airflow's home (its configuration holds
    the database password of the purged PostgreSQL), the docs site, dbt's work, the logs
    and a lake outside the state directory all go; a named service purges only its own."""
    from streamhouse.runtime import stack

    state, lake = tmp_path / "state", tmp_path / "elsewhere" / "lake"
    for path in (
        state / "airflow" / "airflow.cfg",
        state / "docs" / "index.html",
        state / "dbt" / "marts" / "manifest.json",
        state / "kafka" / "data" / "meta.properties",
        state / "logs" / "marts.log",
        lake / "bronze" / "quake_changes" / "_delta_log" / "0.json",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    settings = Settings(state_dir=state, lake_root=str(lake))
    messages: list[str] = []
    stack.down(settings, ["kafka"], purge=True, report=messages.append)
    assert not (state / "kafka").exists() and (state / "airflow" / "airflow.cfg").exists()
    stack.down(settings, purge=True, report=messages.append)
    assert list(state.iterdir()) == [] and not lake.exists(), messages


def test_the_demo_names_a_service_that_stopped_while_it_waited(tmp_path: Path) -> None:
    """The background driver died at start (a creation race) and the demo waited 600 s for
    silver; now it stops at the next look, naming the service and its log."""
    from core.errors import UserFacingError
    from core.settings import Settings
    from streamhouse.demo import require_running
    from streamhouse.runtime import stack

    settings = Settings(state_dir=tmp_path)
    running = stack.service_paths(settings, "streaming")
    pid = process.spawn(running, [sys.executable, "-c", "import time; time.sleep(60)"], {})
    try:
        require_running(settings, ("streaming",))
        with pytest.raises(UserFacingError) as stopped:
            require_running(settings, ("streaming", "streaming-background"))
        message = str(stopped.value)
        assert "streaming-background service stopped" in message
        assert str(stack.log_path(settings, "streaming-background")) in message
    finally:
        process.stop(running, timeout_s=5)
    assert process.read_pid(running) is None and pid > 0


def _sleeper(
    name: str, depends_on: tuple[str, ...], ready: Callable[[], bool], log: list[str]
) -> ServiceSpec:
    def prepare(paths: process.ServicePaths) -> list[str]:
        log.append(f"start {name}")
        return ["sleep", "60"] if name != "broken" else ["false"]

    return ServiceSpec(name, None, depends_on, prepare, ready)


def test_services_that_do_not_depend_on_each_other_start_together(tmp_path: Path) -> None:
    # "a" becomes ready only once "b" has begun to start: one service at a time
    # (the old sequential start) waits on "a" until its timeout.
    settings = Settings(state_dir=tmp_path, runtime={"start_timeout_s": 10})
    log: list[str] = []
    specs = {
        "a": _sleeper("a", (), lambda: "start b" in log, log),
        "b": _sleeper("b", (), lambda: True, log),
        "c": _sleeper("c", ("a", "b"), lambda: True, log),
    }
    ready: set[str] = set()
    try:
        start_all(settings, specs, ["a", "b", "c"], ready, report=log.append)
    finally:
        for name in specs:
            process.stop(service_paths(settings, name), 5)
    assert ready == {"a", "b", "c"}
    # "c" starts after both its dependencies were ready, never before.
    started_c = log.index("start c")
    readies = [i for i, line in enumerate(log) if line.split(":")[0] in "ab" and "ready in" in line]
    assert len(readies) == 2 and max(readies) < started_c, log


def test_a_failed_start_names_its_service_and_starts_nothing_that_needs_it(
    tmp_path: Path,
) -> None:
    settings = Settings(state_dir=tmp_path, runtime={"start_timeout_s": 10})
    log: list[str] = []
    specs = {
        "broken": _sleeper("broken", (), lambda: False, log),
        "b": _sleeper("b", (), lambda: True, log),
        "c": _sleeper("c", ("broken",), lambda: True, log),
    }
    ready: set[str] = set()
    try:
        with pytest.raises(UserFacingError) as failure:
            start_all(settings, specs, ["broken", "b", "c"], ready, report=log.append)
    finally:
        for name in specs:
            process.stop(service_paths(settings, name), 5)
    assert str(failure.value) == (
        f"broken exited while starting; its log is {service_paths(settings, 'broken').log}"
    )
    assert ready == {"b"}
    assert "start c" not in log


def test_an_interrupted_start_stops_waiting_for_its_services(tmp_path: Path) -> None:
    # Ctrl-C sets `abandon`: leaving the start must not wait out each service's timeout.
    settings = Settings(state_dir=tmp_path, runtime={"start_timeout_s": 120})
    log: list[str] = []
    specs = {"slow": _sleeper("slow", (), lambda: False, log)}
    abandon = threading.Event()
    threading.Timer(1.0, abandon.set).start()
    began = time.monotonic()
    try:
        with pytest.raises(UserFacingError, match="slow: no longer waited for"):
            start_all(settings, specs, ["slow"], set(), report=log.append, abandon=abandon)
        assert time.monotonic() - began < 30
        # Its process was left running, as a sequential start's was.
        assert process.read_pid(service_paths(settings, "slow")) is not None
    finally:
        process.stop(service_paths(settings, "slow"), 5)
