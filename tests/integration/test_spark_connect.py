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
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT, Settings, settings_env
from streamhouse.runtime import stack

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
