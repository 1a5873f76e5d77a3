"""The streaming driver's supervisor, on stand-in query handles (pure logic, no Spark).

A failed query is restarted from its checkpoint; starting it again runs Spark
jobs of its own, which can fail too. That second failure must not end the
driver (and the queries still running in it): the supervisor tries again at
its next round, backing off, and gives up only after several in a row.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from spark_jobs import streams
from spark_jobs.session import master_with_retries


class FakeQuery:
    def __init__(self, error: str | None = None) -> None:
        self.isActive = error is None
        self._error = error

    def exception(self) -> str | None:
        return self._error

    def stop(self) -> None:
        self.isActive = False


class FakeListener:
    def last_report_s(self, name: str) -> float | None:
        return None


def _supervisor(factory: Callable[[], FakeQuery]) -> tuple[streams.Supervisor, list[float]]:
    slept: list[float] = []
    now = [1000.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    supervisor = streams.Supervisor(
        {"bronze": factory},
        FakeListener(),  # type: ignore[arg-type]
        {"bronze": 600.0},
        clock=lambda: now[0],
        sleep=sleep,
    )
    return supervisor, slept


def test_a_failed_query_is_restarted_with_a_growing_backoff() -> None:
    starts = iter([FakeQuery("batch 3 failed"), FakeQuery("batch 3 failed"), FakeQuery()])
    supervisor, slept = _supervisor(lambda: next(starts))
    supervisor.check()
    supervisor.check()
    assert slept == [2, 4]
    assert supervisor.queries["bronze"].isActive


def test_a_restart_that_fails_leaves_the_driver_running_and_is_tried_again() -> None:
    attempts: list[str] = []

    def factory() -> FakeQuery:
        attempts.append("start")
        if len(attempts) == 1:
            return FakeQuery("Task failed: Block broadcast_7 is not locked for reading")
        if len(attempts) == 2:
            raise RuntimeError("Job aborted: a task of the offsets lookup failed")
        return FakeQuery()

    supervisor, slept = _supervisor(factory)
    supervisor.check()  # the restart raises: logged, not raised
    assert not supervisor.queries["bronze"].isActive
    supervisor.check()  # the next round tries again, with a longer backoff
    assert supervisor.queries["bronze"].isActive
    assert len(attempts) == 3 and slept == [2, 4]


def test_a_query_that_cannot_be_started_again_ends_the_driver_after_several_tries() -> None:
    calls = [0]

    def factory() -> FakeQuery:
        calls[0] += 1
        if calls[0] == 1:
            return FakeQuery("failed")
        raise RuntimeError("the SparkContext was shut down")

    supervisor, _ = _supervisor(factory)
    for _ in range(streams.MAX_FAILED_RESTARTS - 1):
        supervisor.check()
    with pytest.raises(streams.RestartFailedError, match="could not be restarted"):
        supervisor.check()


@pytest.mark.parametrize(
    ("master", "expected"),
    [
        ("local", "local[1,4]"),
        ("local[*]", "local[*,4]"),
        ("local[2]", "local[2,4]"),
        (" local[2] ", "local[2,4]"),
        ("local[2,8]", "local[2,8]"),
        ("local-cluster[2,1,1024]", "local-cluster[2,1,1024]"),
        ("spark://10.0.0.5:7077", "spark://10.0.0.5:7077"),
        ("yarn", "yarn"),
    ],
)
def test_a_local_master_retries_a_failed_task_like_a_cluster(master: str, expected: str) -> None:
    assert master_with_retries(master, 4) == expected


def test_an_available_now_run_starts_each_query_after_those_it_reads() -> None:
    """A Delta source reads up to the version current when its query starts: run at once,
    silver would see an empty bronze and end with nothing (the marts benchmark met it)."""
    everything = streams.resolve_jobs(())
    assert streams.run_stages(everything, available_now=True) == [
        ("bronze",),
        ("late", "silver", "windows"),
        ("rollup",),
    ]
    assert streams.run_stages(("silver", "bronze"), available_now=True) == [
        ("bronze",),
        ("silver",),
    ]
    # Continuous queries all run at once: each keeps reading what the others write.
    assert streams.run_stages(everything, available_now=False) == [everything]
