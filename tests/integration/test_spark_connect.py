"""The stack's Spark Connect server, the driver Airflow's Spark tasks run on: it asks for its
token, and each client's session keeps its own settings, so a task's commit marker never
lands on another task's commits (the rerun proof tells a run's versions by that marker).

The clients run in child processes: a Connect client sets ``SPARK_REMOTE`` for
its whole process, and this one holds the suite's local SparkSession.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT, Settings, settings_env
from spark_jobs.catalog import metastore_lock
from streamhouse.runtime import stack
from streamhouse.runtime.process import port_in_use

pytestmark = pytest.mark.timeout(600)

#: Two sessions on the server: one sets a commit marker, both write a table; the history.
_TWO_SESSIONS = """
import json, sys
from core.settings import Settings
from pyspark.sql import SparkSession
from spark_jobs.connect import client_url, connect_session
from lake.time_travel import USER_METADATA_CONF
settings = Settings()
marked = connect_session(settings, "marked")
other = SparkSession.builder.remote(client_url(settings)).create()  # a second task's
marked.conf.set(USER_METADATA_CONF, "run-a")
path = sys.argv[1]
marked.sql(f"CREATE TABLE delta.`{path}` (n INT) USING delta")
marked.sql(f"INSERT INTO delta.`{path}` VALUES (1)")
other.sql(f"INSERT INTO delta.`{path}` VALUES (2)")
history = other.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()
print(json.dumps({str(r["version"]): r["userMetadata"] for r in history}))
"""

#: A client without the token: the server's answer.
_NO_TOKEN = """
import sys
from pyspark.sql import SparkSession
try:
    SparkSession.builder.remote(sys.argv[1]).getOrCreate().sql("SELECT 1").collect()
except Exception as error:
    print(type(error).__name__, " ".join(str(error).split()))
else:
    print("answered")
"""


#: A client's first statement: what it got.
_FIRST_CLIENT = """
from core.settings import Settings
from spark_jobs.connect import connect_session
try:
    n = connect_session(Settings(), "first-client").sql("SELECT 1 AS n").collect()[0]["n"]
except Exception as error:
    print(type(error).__name__, " ".join(str(error).split())[:500])
else:
    print(f"answered {n}")
"""


def _client(settings: Settings, code: str, *args: str) -> str:
    env = settings_env(settings)
    for name in ("SPARK_REMOTE", "SPARK_CONNECT_AUTHENTICATE_TOKEN"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_the_server_is_ready_once_its_driver_can_serve_not_when_its_port_opens(
    infra_stack: Settings,
) -> None:
    """The Connect plugin opens the port while Spark builds the driver, before the driver
    opened the catalog (under the metastore lock) and before a session can be served: a
    client then got "No active or default Spark session found". Here the lock is held
    while the server starts, so its port is open and its driver waits: ``stack up``
    must not call it ready until the lock is released."""
    settings = infra_stack
    host, port = settings.runtime.host, settings.runtime.ports.spark_connect
    stack.down(settings, ["spark-connect"], report=print)
    holding, release, started = threading.Event(), threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold() -> None:
        with metastore_lock(settings):
            holding.set()
            release.wait(180)

    def start() -> None:
        try:
            stack.up(settings, ["spark-connect"], report=print)
        except BaseException as error:  # shown by the assertion below
            failures.append(error)
        finally:
            started.set()

    threading.Thread(target=hold, daemon=True).start()
    assert holding.wait(60), "could not take the metastore lock"
    try:
        threading.Thread(target=start, daemon=True).start()
        deadline = time.monotonic() + 170
        while not port_in_use(host, port):
            assert not started.is_set(), f"spark-connect ended its start early: {failures}"
            assert time.monotonic() < deadline, "spark-connect never opened its port"
            time.sleep(0.5)
        # Port open, driver waiting on the catalog: not ready.
        assert not started.wait(8), "stack up said spark-connect was ready before it could serve"
    finally:
        release.set()
    assert started.wait(240) and not failures, failures
    assert _client(settings, _FIRST_CLIENT) == "answered 1"


@pytest.fixture(scope="module")
def connect_stack(infra_stack: Settings) -> Settings:
    stack.up(infra_stack, ["spark-connect"], report=print)
    return infra_stack


def test_the_server_refuses_a_client_without_its_token(connect_stack: Settings) -> None:
    from spark_jobs.connect import client_url

    answer = _client(connect_stack, _NO_TOKEN, client_url(connect_stack))
    assert "UNAUTHENTICATED" in answer or "authentication token" in answer, answer


def test_a_session_s_commit_marker_stays_on_its_own_commits(
    connect_stack: Settings, tmp_path: Path
) -> None:
    table = tmp_path / "marked"
    history = json.loads(_client(connect_stack, _TWO_SESSIONS, str(table)))
    # Version 0 (CREATE) and 1 (the marked INSERT) by the marked session, 2 by the other.
    assert history == {"0": "run-a", "1": "run-a", "2": None}, history
