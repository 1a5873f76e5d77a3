"""The poller against the real Kafka and registry and the simulator: exactly once, faults, DLQ.

Each test gets its own topics and source name (so its own transactional id and
cursor), an in-process simulator whose data change while the poller runs, and
reads the topics back with ``isolation.level=read_committed``. The simulator
keeps every version current for a few seconds (``min_version_age``), so every
version in its history is one the poller can see: the topic must hold exactly
that history, each version once.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from prometheus_client.parser import text_string_to_metric_families

from core.settings import PROJECT_ROOT, Settings, settings_env
from producers import poller
from producers.simulator.server import SimulatorServer

Version = tuple[str, int]


@dataclass
class Topic:
    """A topic read to its end: each message's key, value, headers."""

    messages: list[tuple[bytes | None, bytes | None, dict[str, bytes]]]


def read_topic(settings: Settings, topic: str, isolation: str = "read_committed") -> Topic:
    """Every message of ``topic`` (all partitions) as a consumer with ``isolation`` sees it."""
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        pending = set(partitions)
        messages: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error() is not None:
                assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                pending.discard(message.partition())
                continue
            headers = {k: bytes(v) for k, v in (message.headers() or [])}
            messages.append((message.key(), message.value(), headers))
        assert not pending, f"did not reach the end of {topic}"
        return Topic(messages)
    finally:
        consumer.close()


def change_versions(settings: Settings, isolation: str = "read_committed") -> list[Version]:
    """(entity_id, updated_ms) of every change event in the changes topic, in read order."""
    topic = settings.kafka.changes_topic
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": settings.registry.url}))
    context = SerializationContext(topic, MessageField.VALUE)
    versions = []
    for _, value, _ in read_topic(settings, topic, isolation).messages:
        record = deserializer(value, context)
        versions.append((record["entity_id"], record["updated_ms"]))
    return versions


def history(server: SimulatorServer) -> dict[str, Any]:
    return httpx.get(server.base_url + "/admin/history", timeout=10).json()  # type: ignore[no-any-return]


def admin(server: SimulatorServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(server.base_url + path, json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def wait_until_caught_up(settings: Settings, expected: set[Version], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if set(change_versions(settings)) >= expected:
            return
        time.sleep(1.0)


def test_every_fault_and_drift_ends_in_the_dlq_and_nothing_is_lost_or_doubled(
    isolated: Settings, simulator: SimulatorServer
) -> None:
    settings = isolated.model_copy(
        update={"source": isolated.source.model_copy(update={"base_url": simulator.query_url})}
    )
    stop = threading.Event()
    summaries: list[poller.PollSummary] = []
    worker = threading.Thread(
        target=poller.run,
        args=(settings, 0.2, stop),
        kwargs={"on_poll": summaries.append, "flush_timeout_s": 10.0},
        daemon=True,
    )
    worker.start()
    try:
        # Seed versions are old enough to be revised at once: change nothing
        # before the first poll has read them.
        wait_for(lambda: any(s.produced for s in summaries), timeout_s=60)
        admin(simulator, "/admin/dynamics", {"changes_per_s": 6.0})
        drifted: list[tuple[Version, str]] = []
        # Every response fault in turn (Retry-After as seconds, then as a date), then drift.
        for switches in (
            {"queue": ["rate_limit"], "retry_after_s": 1},
            {"queue": ["rate_limit"], "retry_after_as_date": True, "retry_after_s": 2},
            {"queue": ["unavailable", "server_error"], "retry_after_as_date": False},
            {"queue": ["slow"], "slow_s": 1.5},
            {"queue": ["truncate"]},
            {"queue": ["malformed"]},
        ):
            admin(simulator, "/admin/faults", switches)
            time.sleep(1.5)
        for kind in ("new_field", "removed_field", "changed_type"):
            version = admin(simulator, "/admin/drift", {"kind": kind})
            drifted.append(((version["id"], version["updated"]), kind))
            time.sleep(1.0)
        time.sleep(2.0)
        admin(simulator, "/admin/dynamics", {"changes_per_s": 0})
        served = history(simulator)
        every_version = {(key, updated) for key, updated in served["versions"]}
        drifted_versions = {version for version, _ in drifted}
        expected = every_version - drifted_versions
        wait_until_caught_up(settings, expected, timeout_s=60)
        assert worker.is_alive(), "the poller stopped"
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()

    versions = change_versions(settings)
    duplicates = [v for v, n in Counter(versions).items() if n > 1]
    assert duplicates == []
    assert len(every_version) > 1304  # the data changed while the poller ran
    assert sorted(expected - set(versions)) == []  # lost (the short form of the diff below)
    assert set(versions) == expected
    served_after = {(key, updated) for key, updated in history(simulator)["served"]}
    assert served_after >= set(versions)

    letters = read_topic(settings, settings.kafka.dead_letter_topic).messages
    by_stage = Counter(headers["stage"].decode() for _, _, headers in letters)
    assert by_stage["page"] >= 2  # the truncated and the malformed page
    reasons = {h["reason"].decode() for _, _, h in letters if h["stage"] == b"page"}
    assert all("not valid JSON" in reason for reason in reasons), reasons
    page_bodies = [value for _, value, h in letters if h["stage"] == b"page"]
    assert any(body is not None and body.startswith(b"<html>") for body in page_bodies)
    record_letters = {
        (key.decode() if key else None): headers
        for key, _, headers in letters
        if headers["stage"] == b"record"
    }
    expected_reason = {
        "new_field": "unexpected field properties.magError",
        "removed_field": "field properties.place is missing",
        "changed_type": "expected a number, got str",
    }
    for (event_id, _), kind in drifted:
        headers = record_letters[event_id]
        assert expected_reason[kind] in headers["reason"].decode(), headers
        assert headers["source"].decode() == settings.source.name
        assert headers["error_class"] and headers["poll_id"]
    assert any(s.page_error for s in summaries)


def _start_poller(settings: Settings, log_path: Any) -> subprocess.Popen[bytes]:
    env = settings_env(settings)
    return subprocess.Popen(
        [sys.executable, "-m", "streamhouse.cli", "poll", "--interval-s", "0.5"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log_path,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_sigkill_five_times_loses_nothing_and_doubles_nothing(
    isolated: Settings, simulator: SimulatorServer, tmp_path: Any
) -> None:
    metrics_port = free_port()
    settings = isolated.model_copy(
        update={
            "source": isolated.source.model_copy(update={"base_url": simulator.query_url}),
            "runtime": isolated.runtime.model_copy(
                update={
                    "ports": isolated.runtime.ports.model_copy(
                        update={"poller_metrics": metrics_port}
                    )
                }
            ),
        }
    )
    rng = random.Random(int(os.environ.get("STREAMHOUSE_TEST_KILL_SEED", "5")))
    log_file = (tmp_path / "poller.log").open("ab")
    process = _start_poller(settings, log_file)
    try:
        # Seed versions are old enough to be revised at once: change nothing
        # before the first poll has committed them.
        wait_for(lambda: len(change_versions(settings)) >= 1304, timeout_s=60)
        admin(simulator, "/admin/dynamics", {"changes_per_s": 8.0})
        for _ in range(5):
            time.sleep(rng.uniform(1.0, 4.0))
            assert process.poll() is None, (tmp_path / "poller.log").read_text()
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            process = _start_poller(settings, log_file)
        time.sleep(3.0)
        admin(simulator, "/admin/dynamics", {"changes_per_s": 0})
        expected = {(key, updated) for key, updated in history(simulator)["versions"]}
        wait_until_caught_up(settings, expected, timeout_s=90)
        assert process.poll() is None, (tmp_path / "poller.log").read_text()
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        log_file.close()
    assert process.returncode == 0, (tmp_path / "poller.log").read_text()[-3000:]

    committed = change_versions(settings)
    assert [v for v, n in Counter(committed).items() if n > 1] == []
    assert set(committed) == expected
    # Whatever a killed poller had sent in its open transaction was aborted:
    # visible to a read_uncommitted reader only, and each such version is in
    # the committed log exactly once (sent again, and counted, by a successor).
    uncommitted = Counter(change_versions(settings, "read_uncommitted"))
    resent = uncommitted - Counter(committed)
    assert set(resent) <= set(committed)
    # Values, not names: the last poller committed polls and produced what changed
    # after its start. (Exact resend counts are the deterministic crash test's:
    # tests/integration/test_poller_transactions.py.)
    samples = {
        (sample.name, sample.labels.get("outcome")): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    assert samples[("streamhouse_poller_records_produced_total", None)] > 0
    assert samples[("streamhouse_poller_polls_total", "ok")] > 0
