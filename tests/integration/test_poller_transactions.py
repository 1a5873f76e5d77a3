"""The poller's Kafka transaction under faults placed on purpose (real Kafka, registry, simulator).

- A crash between produce and commit: the poller kills itself inside its
  first transaction (after producing every record, before committing), and
  the test checks the marker it wrote first, so the fault provably landed
  there. A new poller aborts the open transaction, resends those versions
  and counts them; each version is then in Kafka exactly once.
- A retriable commit error: the first commit gets a real librdkafka timeout,
  the broker frozen (SIGSTOP) while it waits. The same transaction is
  committed on retry (aborting it would have resent records the broker may
  already hold).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import KafkaException
from prometheus_client.parser import text_string_to_metric_families

from core.settings import PROJECT_ROOT, Settings, settings_env
from producers import poller
from producers.cursor import Cursor
from producers.kafka_io import make_change_publisher
from producers.metrics import COMMIT_RETRIES
from producers.simulator.server import SimulatorServer
from streamhouse.runtime.process import read_pid
from streamhouse.runtime.stack import service_paths

from .test_poller_exactly_once import change_versions, free_port, history, wait_for

HARNESS = Path(__file__).with_name("poller_crash_harness.py")


def _with_source(settings: Settings, simulator: SimulatorServer, **runtime: Any) -> Settings:
    return settings.model_copy(
        update={
            "source": settings.source.model_copy(update={"base_url": simulator.query_url}),
            "runtime": settings.runtime.model_copy(
                update={"ports": settings.runtime.ports.model_copy(update=runtime)}
            ),
        }
    )


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_crash_between_produce_and_commit_loses_and_doubles_nothing(
    isolated: Settings, simulator: SimulatorServer, tmp_path: Path
) -> None:
    metrics_port = free_port()
    settings = _with_source(isolated, simulator, poller_metrics=metrics_port)
    env = settings_env(settings)
    marker = tmp_path / "crashed.json"
    log = tmp_path / "poller.log"
    with log.open("ab") as out:
        crashing = subprocess.run(
            [sys.executable, str(HARNESS), str(marker), "1"],
            env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=120,
            check=False,
        )  # fmt: skip
    assert crashing.returncode == -9, log.read_text()[-3000:]
    crash = json.loads(marker.read_text())  # the fault landed inside the transaction
    assert crash["versions"] == 1304
    assert change_versions(settings) == []  # nothing of the open transaction is visible
    assert len(change_versions(settings, "read_uncommitted")) == 1304  # but it is in the log

    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamhouse.cli", "poll", "--interval-s", "0.5"],
            env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: len(change_versions(settings)) >= 1304, timeout_s=90)
        time.sleep(2)  # a duplicate would land now
        metrics = _samples(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text)
    finally:
        process.terminate()
        process.wait(30)
    source = settings.source.name
    assert metrics[("streamhouse_poller_records_resent_total", (("source", source),))] == 1304
    aborted = (
        "streamhouse_poller_transactions_aborted_total",
        (("reason", "crash"), ("source", source)),
    )
    assert metrics[aborted] == 1
    committed = change_versions(settings)
    assert [v for v, n in Counter(committed).items() if n > 1] == []
    assert set(committed) == {(key, updated) for key, updated in history(simulator)["versions"]}


#: How long the first commit may take while the broker is frozen: it times out for certain.
FROZEN_COMMIT_TIMEOUT_S = 1.0


class FirstCommitTimesOut:
    """A real producer whose first commit gets a real librdkafka timeout, on purpose.

    The broker is frozen (SIGSTOP) for that commit, so its EndTxn cannot be
    answered in time, whatever the machine's speed, and thawed (SIGCONT) before
    the error reaches the publisher, whose retry then completes the same
    transaction. (A 1 ms deadline on a live broker was not a sure timeout: on a
    quick run the commit finished in time, and the test failed on the second
    commit of a transaction already committed.)
    """

    def __init__(self, producer: Any, broker_pid: int) -> None:
        self._producer = producer
        self._broker_pid = broker_pid
        self.frozen_commits = 0
        self.injected: list[KafkaException] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def commit_transaction(self, timeout: float = -1) -> None:
        if self.frozen_commits == 0:
            self.frozen_commits += 1
            os.kill(self._broker_pid, signal.SIGSTOP)
            try:
                self._producer.commit_transaction(FROZEN_COMMIT_TIMEOUT_S)
                return  # not expected: the test's assertion on `injected` says so
            except KafkaException as error:
                self.injected.append(error)
                raise
            finally:
                os.kill(self._broker_pid, signal.SIGCONT)
        self._producer.commit_transaction(timeout)


def test_a_retriable_commit_error_commits_the_same_transaction(
    isolated: Settings, simulator: SimulatorServer
) -> None:
    settings = _with_source(isolated, simulator)
    publisher = make_change_publisher(
        settings,
        schema_name="quake_change.avsc",
        client_id="commit-fault",
        transactional_id=f"commit-fault-{uuid.uuid4().hex[:8]}",
    )
    broker_pid = read_pid(service_paths(settings, "kafka"))
    assert broker_pid is not None, "the stack's Kafka broker is not running"
    faulty = FirstCommitTimesOut(publisher.producer, broker_pid)
    publisher.producer = faulty
    retries_before = COMMIT_RETRIES._value.get()

    summary = poller.poll_once(settings, Cursor(), publisher=publisher, flush_timeout_s=30.0)

    assert faulty.injected, "the injected timeout did not happen"
    assert faulty.injected[0].args[0].retriable()
    assert COMMIT_RETRIES._value.get() == retries_before + 1
    assert summary.ok and summary.produced == 1304
    committed = change_versions(settings)
    assert len(committed) == len(set(committed)) == 1304
