"""Suite-wide rules: with CI=true, a skipped test fails the run.

A test that skips when a service is missing hides a missing install step, so
CI must run every test, integration tests included.
"""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session under CI when anything was skipped."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        reporter.write_line(
            f"CI=true: {len(skipped)} test(s) were skipped; every test must run in CI.", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One local SparkSession (Delta, Kafka, Avro jars from the cache) for the whole run."""
    from core.settings import Settings
    from spark_jobs.session import build_spark

    state = tmp_path_factory.mktemp("spark-state")
    session = build_spark(
        Settings(
            state_dir=state,
            spark={"master": "local[2]", "shuffle_partitions": 2},
            # Pure Spark tests need no service: Spark's own per-session catalog.
            catalog={"kind": "in-memory"},
        ),
        "streamhouse-tests",
    )
    yield session
    session.stop()
