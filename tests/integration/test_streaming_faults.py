"""The streaming jobs under faults, against the real Kafka, registry and Spark + Delta.

100,000 generated change events with duplicates, out-of-order and late events
flow through `streamhouse stream run` while it is killed with SIGKILL at
random moments and restarted. Afterwards:
- bronze holds every Kafka record exactly once (by topic, partition, offset);
- silver equals the current state computed here, independently, from the
  records read back from Kafka with a plain consumer;
- the windowed aggregates equal a batch replay of bronze, row for row;
- every event flagged late is in the late-events table, and none is in a window;
- two records with impossible event times (year 9999, the largest long) end in
  quarantine with their reason, and move no watermark: every on-time event
  after them is still in its window;
- with bronze moved away, a replay from Kafka alone rebuilds bronze (``is_late``
  included), quarantine, silver and the windows equal to the live ones.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pyspark.sql import SparkSession
from pyspark.sql import functions as F  # noqa: N812

from core.kafka_topics import offset_span
from core.settings import PROJECT_ROOT, Settings, settings_env
from lake.tables import (
    BRONZE_QUAKE_CHANGES,
    LATE_QUAKE_CHANGES,
    QUAKE_WINDOWS_1H,
    QUAKE_WINDOWS_1M,
    QUARANTINE_QUAKE_CHANGES,
    SILVER_QUAKES,
)
from spark_jobs import reconcile, replay

from .conftest import FIXTURES
from .streaming_helpers import stop

EVENTS = 100_000
KILLS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _topic_size(settings: Settings, topic: str) -> int:
    return offset_span(settings.kafka, topic)


def _read_topic(settings: Settings, topic: str) -> list[tuple[int, int, dict[str, Any]]]:
    """Every record of the topic, decoded with the registry: (partition, offset, value)."""
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
    expected = _topic_size(settings, topic)
    records: list[tuple[int, int, dict[str, Any]]] = []
    consumer.subscribe([topic])
    ctx = SerializationContext(topic, MessageField.VALUE)
    deadline = time.monotonic() + 180
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(5000, timeout=1.0):
                if message.error() is None:
                    value = deserializer(message.value(), ctx)
                    records.append((message.partition(), message.offset(), value))
    finally:
        consumer.close()
    return records


def _spawn(args: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = settings_env(settings)
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "streamhouse.cli", *args],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _bronze_count(spark: SparkSession, settings: Settings) -> int:
    try:
        return int(
            spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri)).count()
        )
    except Exception:
        return 0


@pytest.fixture
def fault_settings(quiet_stack: Settings, tmp_path: Path) -> Settings:
    infra_stack = quiet_stack
    topic = f"faults-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(infra_stack.kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
    return infra_stack.model_copy(
        update={
            "lake_root": str(tmp_path / "lake"),
            "kafka": infra_stack.kafka.model_copy(update={"changes_topic": topic}),
            "spark": infra_stack.spark.model_copy(
                update={"trigger_interval": "2 seconds", "max_offsets_per_trigger": 20_000}
            ),
            "runtime": infra_stack.runtime.model_copy(
                update={
                    "ports": infra_stack.runtime.ports.model_copy(
                        update={"stream_metrics": _free_port()}
                    )
                }
            ),
        }
    )


def test_exactly_once_through_kills_and_replay_equals_live(
    fault_settings: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    settings = fault_settings
    topic = settings.kafka.changes_topic
    rng = random.Random(20261126)
    os.environ.setdefault("STREAMHOUSE_LOADGEN__METRICS_PORT", "0")
    loadgen = _spawn(
        [
            "loadgen",
            "--rate", "2500",
            "--events", str(EVENTS),
            "--processes", "1",
            "--duplicates", "0.05",
            "--out-of-order", "0.05",
            "--late", "0.01",
            "--entities", "5000",
            "--topic", topic,
            "--seed", "7",
        ],
        settings,
        tmp_path / "loadgen.log",
    )  # fmt: skip
    stream_log = tmp_path / "stream.log"
    stream = _spawn(["stream", "run"], settings, stream_log)
    for _ in range(KILLS):
        time.sleep(rng.uniform(15, 30))
        os.killpg(stream.pid, signal.SIGKILL)
        stream.wait()
        stream = _spawn(["stream", "run"], settings, stream_log)
    assert loadgen.wait(timeout=300) == 0, (tmp_path / "loadgen.log").read_text()[-2000:]
    implausible = _produce_implausible(settings)

    in_kafka = _topic_size(settings, topic)
    assert in_kafka >= EVENTS + len(implausible)
    records = [r for r in _read_topic(settings, topic) if (r[0], r[1]) not in implausible]
    assert len(records) == in_kafka - len(implausible)
    lake = settings.lake_uri

    def caught_up() -> bool:
        if _bronze_count(spark, settings) < len(records):
            return False
        bronze_now = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(lake))
        # Silver runs on a slow trigger: it has caught up when each entity holds
        # the newest version bronze has, not merely when every entity is there.
        silver_versions = (
            spark.read.format("delta").load(SILVER_QUAKES.path(lake))
            .select("entity_id", "updated_ms")
        )  # fmt: skip
        newest_versions = bronze_now.groupBy("entity_id").agg(
            F.max("updated_ms").alias("updated_ms")
        )
        silver_behind = newest_versions.exceptAll(silver_versions).count()
        on_time_versions = (
            bronze_now.where(~F.col("is_late")).select("entity_id", "updated_ms").distinct().count()
        )
        late_rows = spark.read.format("delta").load(LATE_QUAKE_CHANGES.path(lake)).count()
        if late_rows != bronze_now.where(F.col("is_late")).count():
            return False
        windowed = spark.read.format("delta").load(QUAKE_WINDOWS_1M.path(lake))
        counted = windowed.agg(F.sum("event_count")).first()
        # Each event falls in 12 one-hour windows sliding by 5 minutes.
        hourly = spark.read.format("delta").load(QUAKE_WINDOWS_1H.path(lake))
        counted_hourly = hourly.agg(F.sum("event_count")).first()
        return (
            silver_behind == 0
            and (counted is not None and counted[0] == on_time_versions)
            and (counted_hourly is not None and counted_hourly[0] == 12 * on_time_versions)
        )

    deadline = time.monotonic() + 480
    while time.monotonic() < deadline:
        assert stream.poll() is None, stream_log.read_text()[-3000:]
        try:
            if caught_up():
                break
        except Exception:  # a table not created yet
            pass
        time.sleep(5)
    stop(stream, signal.SIGTERM)

    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(lake))
    positions = bronze.select("kafka_topic", "kafka_partition", "kafka_offset")
    assert bronze.count() == len(records), "every decodable Kafka record in bronze"
    assert positions.distinct().count() == len(records), "no Kafka record twice in bronze"
    quarantine = spark.read.format("delta").load(QUARANTINE_QUAKE_CHANGES.path(lake))
    reasons = {(r.kafka_partition, r.kafka_offset): r.reason for r in quarantine.collect()}
    assert set(reasons) == implausible
    assert all(reason.startswith("implausible event time: ") for reason in reasons.values())

    # Silver against the current state computed here from the records themselves.
    newest: dict[str, tuple[int, int, int, dict[str, Any]]] = {}
    for partition, offset, value in records:
        key = value["entity_id"]
        rank = (value["updated_ms"], -partition, -offset)
        if key not in newest or rank > newest[key][:3]:
            newest[key] = (*rank, value)
    silver = {
        r.entity_id: r for r in spark.read.format("delta").load(SILVER_QUAKES.path(lake)).collect()
    }
    assert set(silver) == set(newest)
    wrong = [
        key
        for key, (_, _, _, value) in newest.items()
        if (silver[key].updated_ms, silver[key].op, silver[key].mag)
        != (value["updated_ms"], value["op"], value["quake"]["mag"])
    ]
    assert wrong == [], f"{len(wrong)} entities differ, e.g. {wrong[:5]}"

    late = spark.read.format("delta").load(LATE_QUAKE_CHANGES.path(lake))
    assert late.count() == bronze.where(F.col("is_late")).count() > 0

    counts = replay.replay_bronze(spark, settings, None, None)
    assert counts["silver"] == len(newest)  # one silver row per entity
    differences = reconcile.reconcile(spark, settings)
    assert differences == [], f"{len(differences)} differences, first: {differences[:5]}"

    # Bronze gone: everything rebuilt from Kafka alone equals what the live stream built.
    live_bronze = tmp_path / "bronze-moved-away"
    shutil.move(BRONZE_QUAKE_CHANGES.path(lake), live_bronze)
    for side in Path(lake).glob("*_replay"):
        shutil.rmtree(side)
    counts = replay.replay_kafka(spark, settings, replay.KafkaRange())
    assert (counts["records"], counts["quarantined"]) == (in_kafka, len(implausible))
    assert reconcile.reconcile(spark, settings) == []
    rebuilt = spark.read.format("delta").load(replay.replay_table(BRONZE_QUAKE_CHANGES).path(lake))
    original = spark.read.format("delta").load(str(live_bronze))
    not_compared = ("ingested_at", "ingest_date")  # when a row was written, not what it says
    original_rows = original.drop(*not_compared)
    rebuilt_rows = rebuilt.drop(*not_compared).select(*original_rows.columns)
    assert original_rows.where(F.col("is_late")).count() > 0
    assert original_rows.exceptAll(rebuilt_rows).count() == 0
    assert rebuilt_rows.exceptAll(original_rows).count() == 0
    rebuilt_quarantine = spark.read.format("delta").load(
        replay.replay_table(QUARANTINE_QUAKE_CHANGES).path(lake)
    )
    assert {
        (r.kafka_partition, r.kafka_offset): r.reason for r in rebuilt_quarantine.collect()
    } == reasons


def _produce_implausible(settings: Settings) -> set[tuple[int, int]]:
    """Two change events dated in the year 9999 and at the largest long; their positions."""
    from producers.loadgen.runner import register_schema
    from producers.mapping import feature_to_quake_change

    feature = json.loads((FIXTURES / "feed_1_day_m1.geojson").read_text())["features"][0]
    records_like = feature_to_quake_change(feature, source="test", poll_id="p", produced_at_ms=0)
    schema_text, schema_id = register_schema(settings.registry, settings.kafka.changes_topic)
    schema = fastavro.parse_schema(json.loads(schema_text))
    producer = Producer(settings.kafka.client_config())
    positions: set[tuple[int, int]] = set()

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        positions.add((message.partition(), message.offset()))

    for event_time_ms in (253_370_764_800_000, 2**63 - 1):
        record = {
            **records_like,
            "entity_id": f"far-future-{event_time_ms}",
            "event_time_ms": event_time_ms,
        }
        payload = io.BytesIO()
        fastavro.schemaless_writer(payload, schema, record)
        producer.produce(
            settings.kafka.changes_topic,
            value=b"\x00" + struct.pack(">I", schema_id) + payload.getvalue(),
            on_delivery=delivered,
        )
    assert producer.flush(30) == 0
    return positions
