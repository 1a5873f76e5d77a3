"""Schema evolution against the real registry while a consumer keeps running.

v1 records are produced, then v2 (adds the optional ``quake.region``) is
registered and produced; one running consumer decodes all of them, and a
consumer still on the v1 reader schema keeps working too. An incompatible v3
is refused with HTTP 409 and a sentence that names the field.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from core.schemas import value_subject
from core.settings import PROJECT_ROOT, Settings
from producers.mapping import feature_to_quake_change
from producers.schema_evolution import (
    SchemaIncompatibleError,
    register_schema_version,
    schema_history,
)
from producers.serialization import make_value_serializer

FEED = PROJECT_ROOT / "tests" / "data" / "usgs" / "feed_1_day_m1.geojson"
PER_VERSION = 20


def _records(count: int, offset: int) -> list[dict[str, Any]]:
    features = json.loads(FEED.read_text(encoding="utf-8"))["features"][offset : offset + count]
    context = {"source": "evolution-test", "poll_id": "p", "produced_at_ms": 1_700_000_000_000}
    return [feature_to_quake_change(f, **context) for f in features]


class RunningConsumer(threading.Thread):
    """Decodes every value of ``topic`` with the writer's schema and with the v1 reader schema."""

    def __init__(self, settings: Settings, topic: str, v1_schema: str) -> None:
        super().__init__(daemon=True)
        self.topic = topic
        self.stop = threading.Event()
        self.assigned = threading.Event()
        self.decoded: list[dict[str, Any]] = []
        self.decoded_as_v1: list[dict[str, Any]] = []
        self.schema_ids: list[int] = []
        client = SchemaRegistryClient({"url": settings.registry.url})
        self._latest = AvroDeserializer(client)
        self._old_reader = AvroDeserializer(client, v1_schema)
        self._consumer = Consumer(
            {
                **settings.kafka.client_config(),
                "group.id": f"evolution-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
            }
        )

    def run(self) -> None:
        self._consumer.subscribe([self.topic], on_assign=lambda *_: self.assigned.set())
        ctx = SerializationContext(self.topic, MessageField.VALUE)
        try:
            while not self.stop.is_set():
                message = self._consumer.poll(0.5)
                if message is None or message.error():
                    continue
                value = message.value()
                self.schema_ids.append(int.from_bytes(value[1:5], "big"))
                self.decoded.append(self._latest(value, ctx))
                self.decoded_as_v1.append(self._old_reader(value, ctx))
        finally:
            self._consumer.close()

    def wait_for(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.decoded) < count and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.2)
        assert len(self.decoded) >= count, f"decoded {len(self.decoded)} of {count}"


def _produce(
    settings: Settings, topic: str, serializer: Any, records: list[dict[str, Any]]
) -> None:
    producer = Producer({**settings.kafka.client_config(), "enable.idempotence": True})
    ctx = SerializationContext(topic, MessageField.VALUE)
    for record in records:
        producer.produce(topic, key=record["entity_id"].encode(), value=serializer(record, ctx))
    assert producer.flush(30) == 0


def test_v2_is_produced_while_a_consumer_keeps_running(infra_stack: Settings) -> None:
    topic = f"evolution-{uuid.uuid4().hex[:8]}"
    subject = value_subject(topic)
    admin = AdminClient(infra_stack.kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    client = SchemaRegistryClient({"url": infra_stack.registry.url})
    v1_path, v2_path = schema_history("quake_change")[:2]
    v1 = Schema(v1_path.read_text(encoding="utf-8").strip(), "AVRO")
    v2 = Schema(v2_path.read_text(encoding="utf-8").strip(), "AVRO")

    v1_id = register_schema_version(client, subject, v1, compatibility="BACKWARD")
    consumer = RunningConsumer(infra_stack, topic, v1.schema_str)
    consumer.start()
    try:
        assert consumer.assigned.wait(30), "the consumer got no partition"
        v1_records = _records(PER_VERSION, 0)
        for record in v1_records:
            del record["quake"]["region"]
        _produce(infra_stack, topic, make_value_serializer(client, v1), v1_records)
        consumer.wait_for(PER_VERSION)

        v2_id = register_schema_version(client, subject, v2, compatibility="BACKWARD")
        assert v2_id != v1_id
        v2_records = _records(PER_VERSION, PER_VERSION)
        _produce(infra_stack, topic, make_value_serializer(client, v2), v2_records)
        consumer.wait_for(2 * PER_VERSION)
        assert consumer.is_alive()
    finally:
        consumer.stop.set()
        consumer.join(30)

    assert consumer.schema_ids == [v1_id] * PER_VERSION + [v2_id] * PER_VERSION
    old, new = consumer.decoded[:PER_VERSION], consumer.decoded[PER_VERSION:]
    assert [d["entity_id"] for d in old] == [r["entity_id"] for r in v1_records]
    assert all(d["quake"].get("region") is None for d in old)
    assert new == v2_records
    assert any(d["quake"]["region"] == "CA" for d in new)
    # A consumer that still reads with v1 decodes the v2 records, without the new field.
    assert all("region" not in d["quake"] for d in consumer.decoded_as_v1)
    assert [d["entity_id"] for d in consumer.decoded_as_v1] == [
        r["entity_id"] for r in v1_records + v2_records
    ]

    # v3 changes the type of quake.mag: refused, and the refusal names the field.
    v3 = json.loads(v2.schema_str)
    mag = next(f for f in v3["fields"][7]["type"]["fields"] if f["name"] == "mag")
    mag["type"] = ["null", "string"]
    v3_schema = Schema(json.dumps(v3), "AVRO")
    with pytest.raises(SchemaRegistryError) as raw:
        client.register_schema(subject, v3_schema)
    assert raw.value.http_status_code == 409
    with pytest.raises(SchemaIncompatibleError) as refused:
        register_schema_version(client, subject, v3_schema, compatibility="BACKWARD")
    assert refused.value.http_status_code == 409
    assert refused.value.fields == ("quake.mag",)
    assert "field quake.mag (" in str(refused.value)
    assert subject in str(refused.value)

    # A new field without a default: the same, naming that field.
    v3 = json.loads(v2.schema_str)
    v3["fields"][7]["type"]["fields"].append({"name": "depth_class", "type": "string"})
    with pytest.raises(SchemaIncompatibleError) as refused:
        register_schema_version(client, subject, Schema(json.dumps(v3), "AVRO"))
    assert refused.value.fields == ("quake.depth_class",)
    assert "quake.depth_class (a new field without a default)" in str(refused.value)

    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version) == (v2_id, 2)
