"""What the streaming integration tests share: their own topic and lake, the job as a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pyspark.sql import SparkSession

from core.kafka_topics import offset_span
from core.settings import PROJECT_ROOT, Settings, settings_env
from lake.tables import BRONZE_QUAKE_CHANGES


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def own_topic_and_lake(base: Settings, lake: Path, prefix: str, **spark: Any) -> Settings:
    """``base`` with a new 3-partition topic, a lake of its own and a free metrics port."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(base.kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
    return base.model_copy(
        update={
            "lake_root": str(lake),
            "kafka": base.kafka.model_copy(update={"changes_topic": topic}),
            "spark": base.spark.model_copy(update=spark),
            "runtime": base.runtime.model_copy(
                update={
                    "ports": base.runtime.ports.model_copy(update={"stream_metrics": free_port()})
                }
            ),
        }
    )


def spawn_cli(args: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``streamhouse <args>`` as its own process group, output appended to ``log``."""
    env = settings_env(settings, secrets=True)
    env.setdefault("STREAMHOUSE_LOADGEN__METRICS_PORT", "0")
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "streamhouse.cli", *args],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_loadgen(settings: Settings, log: Path, events: int, *more: str) -> None:
    """Produce ``events`` synthetic change events to the settings' topic and wait for them."""
    loadgen = spawn_cli(
        ["loadgen", "--rate", "5000", "--events", str(events), "--processes", "1",
         "--topic", settings.kafka.changes_topic, *more],
        settings,
        log,
    )  # fmt: skip
    assert loadgen.wait(timeout=300) == 0, log.read_text()[-2000:]


def stop(process: subprocess.Popen[bytes], sig: int, timeout_s: float = 120) -> None:
    """SIGTERM the process as ``stack down`` does (it stops in order), or SIGKILL its group."""
    if sig == signal.SIGKILL:
        os.killpg(process.pid, sig)
    else:
        os.kill(process.pid, sig)
    process.wait(timeout=timeout_s)


def bronze_count(spark: SparkSession, settings: Settings) -> int:
    """Rows in bronze; 0 before the table exists."""
    try:
        return int(
            spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri)).count()
        )
    except Exception:
        return 0


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    alive: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``condition`` until true; fail at the deadline or when ``alive`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            tail = log.read_text()[-3000:] if log else ""
            raise AssertionError(f"the process exited ({alive.returncode}): {tail}")
        if condition():
            return
        time.sleep(2)
    tail = log.read_text()[-3000:] if log else ""
    raise AssertionError(f"not reached within {timeout_s:.0f} s; log tail: {tail}")


def topic_size(settings: Settings) -> int:
    """Records in the settings' topic (written without transactions)."""
    return offset_span(settings.kafka, settings.kafka.changes_topic)


def read_topic(settings: Settings) -> list[tuple[int, int, dict[str, Any]]]:
    """Every record of the topic, decoded with the registry: (partition, offset, value).

    An independent reader: a plain read_committed consumer, not the platform's code.
    """
    topic = settings.kafka.changes_topic
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": settings.registry.url}))
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"verify-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    expected = topic_size(settings)
    records: list[tuple[int, int, dict[str, Any]]] = []
    consumer.subscribe([topic])
    ctx = SerializationContext(topic, MessageField.VALUE)
    deadline = time.monotonic() + 180
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(5000, timeout=1.0):
                if message.error() is None:
                    try:
                        value = deserializer(message.value(), ctx)
                    except Exception:
                        value = None  # poison on purpose; the test knows its positions
                    records.append((message.partition(), message.offset(), value))
    finally:
        consumer.close()
    return records
