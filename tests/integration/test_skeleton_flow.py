"""The walking skeleton, real at every hop: API simulator -> poller -> Kafka (Avro) -> bronze.

The stack's own services carry the records: the simulator serves the real
USGS fixture, the poller publishes it, the bronze stream writes it to Delta.
The test reads bronze back and compares every field of every record with the
fixture, and checks that each Kafka record landed exactly once.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from pyspark.sql import DataFrame, SparkSession

from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES, QUARANTINE_QUAKE_CHANGES
from producers.mapping import feature_to_quake_change
from spark_jobs import bronze_stream, replay
from streamhouse.runtime import stack
from streamhouse.runtime.services import STREAM_DRIVERS, ensure_topics

from .conftest import FIXTURES

#: The stack's processes that carry the fixture from the simulator to the lake.
FLOW = ["simulator", "poller", *STREAM_DRIVERS]


@pytest.fixture(scope="module")
def fresh_flow(
    infra_stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """The stack's own simulator, poller and stream, restarted on topics, a source name, a
    lake and a catalog schema of this module's: the session's stack has carried other
    modules' changes by now (the marts' late revisions and deletes, restarts that reset the
    counters), and this module checks the fixture's exact 1,304 records end to end."""
    suffix = uuid.uuid4().hex[:8]
    settings = infra_stack.model_copy(
        update={
            "lake_root": str(tmp_path_factory.mktemp("skeleton-lake")),
            "kafka": infra_stack.kafka.model_copy(
                update={
                    "changes_topic": f"s{suffix}.quake_changes",
                    "dead_letter_topic": f"s{suffix}.quake_changes.dlq",
                    "cursor_topic": f"_s{suffix}.cursors",
                }
            ),
            "source": infra_stack.source.model_copy(update={"name": f"usgs_{suffix}"}),
            "catalog": infra_stack.catalog.model_copy(update={"lake_schema": f"s{suffix}_lake"}),
        }
    )
    ensure_topics(settings)
    stack.down(infra_stack, FLOW, report=print)
    stack.up(settings, FLOW, report=print)
    try:
        yield settings
    finally:
        stack.down(settings, FLOW, report=print)
        stack.up(infra_stack, FLOW, report=print)


def _bronze(spark: SparkSession, settings: Settings) -> DataFrame:
    return spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))


def _wait_for_rows(spark: SparkSession, settings: Settings, expected: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    count = 0
    while time.monotonic() < deadline:
        try:
            count = _bronze(spark, settings).count()
        except Exception:  # the table does not exist before the first batch
            count = 0
        if count >= expected:
            return count
        time.sleep(2)
    return count


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) and actual is not None:
        return math.isclose(actual, expected, rel_tol=0, abs_tol=1e-12)
    return bool(actual == expected)


def test_every_fixture_record_reaches_bronze_once_with_its_values(
    fresh_flow: Settings, spark: SparkSession
) -> None:
    features = json.loads((FIXTURES / "feed_7_day_m1.geojson").read_text())["features"]
    expected = {
        (f["id"], f["properties"]["updated"]): feature_to_quake_change(
            f, source=fresh_flow.source.name, poll_id="-", produced_at_ms=0
        )
        for f in features
    }
    count = _wait_for_rows(spark, fresh_flow, len(expected), timeout_s=240)
    assert count == len(expected) == 1304

    bronze = _bronze(spark, fresh_flow)
    rows = bronze.collect()
    assert len({(r.kafka_topic, r.kafka_partition, r.kafka_offset) for r in rows}) == len(rows)
    assert len({(r.entity_id, r.updated_ms) for r in rows}) == len(rows)
    assert {(r.entity_id, r.updated_ms) for r in rows} == set(expected)

    mismatches = []
    for row in rows:
        want = expected[(row.entity_id, row.updated_ms)]
        got = row.asDict()
        for name in ("op", "event_time_ms", "source"):
            if got[name] != want[name]:
                mismatches.append((row.entity_id, name, got[name], want[name]))
        for name, value in want["quake"].items():
            if not _same(got[name], value):
                mismatches.append((row.entity_id, name, got[name], value))
        assert got["kafka_topic"] == fresh_flow.kafka.changes_topic
        assert got["produced_at_ms"] > 0 and got["poll_id"]
    assert mismatches == [], mismatches[:10]


def test_poison_records_are_quarantined_and_the_query_goes_on(
    fresh_flow: Settings, spark: SparkSession, tmp_path: Any
) -> None:
    """Random bytes, an unknown schema id, truncated Avro and another subject's schema id
    end in quarantine."""
    topic = f"poison-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(fresh_flow.kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    settings = fresh_flow.model_copy(
        update={
            "lake_root": str(tmp_path / "lake"),
            "kafka": fresh_flow.kafka.model_copy(update={"changes_topic": topic}),
        }
    )
    # A valid record, copied from the live topic's first message and framed with the
    # id of its schema under this topic's subject (TopicNameStrategy: the ingest job
    # decodes only versions of <topic>-value), then three poison ones.
    live = _first_message_value(fresh_flow)
    registry = SchemaRegistryClient({"url": fresh_flow.registry.url})
    writer = registry.get_schema(int.from_bytes(live[1:5], "big"))
    own_id = registry.register_schema(f"{topic}-value", writer)
    good = b"\x00" + own_id.to_bytes(4, "big") + live[5:]
    producer = Producer(fresh_flow.kafka.client_config())
    # Last, a valid record of another subject's schema: decodable, but not a change event.
    other_id = registry.register_schema(
        f"other-{topic}-value",
        Schema('{"type":"record","name":"Other","fields":[{"name":"x","type":"long"}]}', "AVRO"),
    )
    other = b"\x00" + other_id.to_bytes(4, "big") + b"\x02"
    for value in (good, b"\x13\x37random", b"\x00\x00\x00\x7f\xffabc", good[:-8], other):
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0

    query = bronze_stream.start(spark, settings, available_now=True)
    query.awaitTermination(180)
    assert query.exception() is None

    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    quarantine = spark.read.format("delta").load(QUARANTINE_QUAKE_CHANGES.path(settings.lake_uri))
    assert bronze.count() == 1
    reasons = {r.kafka_offset: r.reason for r in quarantine.collect()}
    assert reasons[1].startswith("not in the Confluent wire format")
    # The registry was asked and answered: no such id, or another subject's schema.
    assert reasons[2] == "unknown schema id 32767: the registry has no such id"
    assert own_id != 32767
    assert reasons[3].startswith("Avro payload does not decode")
    assert reasons[4] == (
        f"schema id {other_id} is not a version of {topic}-value (another subject's schema)"
    )
    raw = {r.kafka_offset: bytes(r.raw_value) for r in quarantine.collect()}
    assert raw[1] == b"\x13\x37random"

    # Run again: the checkpoint says everything is processed; nothing is written twice.
    again = bronze_stream.start(spark, settings, available_now=True)
    again.awaitTermination(180)
    assert (
        spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri)).count() == 1
    )

    # The same range replayed in batch, twice: same decode, same rows, written once.
    side = replay.replay_table(BRONZE_QUAKE_CHANGES).path(settings.lake_uri)
    for _ in range(2):
        counts = replay.replay_kafka(spark, settings, replay.KafkaRange())
        assert (counts["records"], counts["bronze"], counts["quarantined"]) == (5, 1, 4)
        assert counts["silver"] == 1  # one entity
        replayed = spark.read.format("delta").load(side)
        assert replayed.count() == 1
    live_row = bronze.drop("ingested_at", "ingest_date").collect()[0].asDict()
    replay_row = replayed.drop("ingested_at", "ingest_date").collect()[0].asDict()
    assert replay_row == live_row


def _first_message_value(settings: Settings) -> bytes:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"g-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.assign([TopicPartition(settings.kafka.changes_topic, 0, 0)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and not message.error():
                return bytes(message.value())
        raise AssertionError("no message in the changes topic")
    finally:
        consumer.close()


def test_prometheus_scrapes_the_platform_processes(fresh_flow: Settings) -> None:
    rt = fresh_flow.runtime
    url = f"http://{rt.host}:{rt.ports.prometheus}/api/v1/targets"
    wanted = {"prometheus", "poller", "streaming"}
    health: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        targets = httpx.get(url, timeout=5).json()["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if all(health.get(job) == "up" for job in wanted):
            break
        time.sleep(2)
    assert {job: health.get(job) for job in wanted} == dict.fromkeys(wanted, "up")

    # Values, not names: the platform's processes report what they did. The
    # stack's poller published the fixture and its stream wrote it to bronze.
    def value(query: str) -> float | None:
        answer = httpx.get(
            f"http://{rt.host}:{rt.ports.prometheus}/api/v1/query",
            params={"query": query},
            timeout=5,
        ).json()
        assert answer["status"] == "success", answer
        results = answer["data"]["result"]
        return float(results[0]["value"][1]) if results else None

    wanted_values = {
        'sum(streamhouse_poller_records_produced_total{job="poller"})': 1304,
        'sum(streamhouse_stream_rows_written_total{job="streaming",sink="bronze"})': 1304,
        # The ingest query reported within the last minute: it is alive, not stalled.
        "time() - streamhouse_stream_query_last_progress_timestamp_seconds"
        '{query="bronze_quake_changes"} < 60': 0,
    }
    values: dict[str, float | None] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        values = {query: value(query) for query in wanted_values}
        if all(v is not None and v >= wanted_values[q] for q, v in values.items()):
            break
        time.sleep(2)
    assert all(
        values[q] is not None and values[q] >= minimum  # type: ignore[operator]
        for q, minimum in wanted_values.items()
    ), values
