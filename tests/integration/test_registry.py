"""The real schema registry: Confluent API, BACKWARD compatibility, ids that survive a restart."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from core.settings import Settings
from spark_jobs.schemas import WriterSchemas, reader_schema
from streamhouse.runtime import stack


def _record(entity_id: str) -> dict[str, object]:
    return {
        "entity_id": entity_id,
        "op": "UPSERT",
        "updated_ms": 1_700_000_000_000,
        "event_time_ms": 1_699_999_990_000,
        "source": "test",
        "poll_id": "p",
        "produced_at_ms": 1_700_000_000_100,
        "quake": {"mag": 3.1, "longitude": 1.0, "latitude": 2.0, "place": "here"},
    }


#: Subjects registered before the test's own, so that the restarted registry replays a
#: journal long enough (seconds) for its API to answer before the replay is done.
FILLER_SUBJECTS = 2000


def _register_fillers(settings: Settings, count: int) -> None:
    schema = json.dumps({"type": "record", "name": "Filler", "fields": []})
    prefix = f"filler-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=settings.registry.url, timeout=30) as client:

        def register(i: int) -> None:
            client.post(
                f"/subjects/{prefix}-{i}-value/versions",
                json={"schema": schema},
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
            ).raise_for_status()

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(register, range(count)))


def _wait_for_the_loading_window(settings: Settings, timeout_s: float = 180) -> None:
    """Return once the registry's API answers while its readiness check still fails."""
    root = settings.registry.ready_url()
    assert root is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            api = httpx.get(f"{settings.registry.url}/subjects", timeout=2).status_code
            ready = httpx.get(root, timeout=2).status_code
        except httpx.HTTPError:
            api = ready = 0
        if api == 200 and ready == 200:
            raise AssertionError(
                "the registry was ready before its API answered from a partial store: "
                "register more filler subjects to lengthen its journal's replay"
            )
        if api == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"the registry did not answer within {timeout_s:.0f} s")


def test_messages_written_before_a_registry_restart_still_decode(infra_stack: Settings) -> None:
    """Ids survive a restart, and nothing is decoded from a registry still loading them.

    KafkaSQL storage replays its journal topic on start and serves its API
    meanwhile, from a partial store ("no such subject" for one that exists).
    The ingest's ``WriterSchemas`` asked in that window gets the full answer,
    once the registry is ready (before, it got none: on the CI machine a batch
    then quarantined all its records as "another subject's schema").
    """
    _register_fillers(infra_stack, FILLER_SUBJECTS)
    topic = f"registry-restart-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(infra_stack.kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    client = SchemaRegistryClient({"url": infra_stack.registry.url})
    serializer = AvroSerializer(client, reader_schema())
    producer = Producer(infra_stack.kafka.client_config())
    for i in range(3):
        value = serializer(_record(f"e{i}"), SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, key=f"e{i}".encode(), value=value)
    assert producer.flush(30) == 0

    stack.down(infra_stack, ["registry"], report=print)
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(stack.up, infra_stack, ["registry"], report=print)
        _wait_for_the_loading_window(infra_stack)
        writer_schemas = WriterSchemas(infra_stack.registry, retry_s=120).of_subject(
            f"{topic}-value"
        )
        starting.result()
    assert list(writer_schemas) == [client.get_latest_version(f"{topic}-value").schema_id]

    # A new client: nothing cached, every schema id is looked up again.
    fresh = SchemaRegistryClient({"url": infra_stack.registry.url})
    deserializer = AvroDeserializer(fresh)
    consumer = Consumer(
        {
            **infra_stack.kafka.client_config(),
            "group.id": f"g-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    decoded = []
    deadline = time.monotonic() + 60
    try:
        while len(decoded) < 3 and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            ctx = SerializationContext(topic, MessageField.VALUE)
            decoded.append(deserializer(message.value(), ctx))
    finally:
        consumer.close()
    assert sorted(d["entity_id"] for d in decoded) == ["e0", "e1", "e2"]
    assert all(d["quake"]["mag"] == 3.1 for d in decoded)


def test_backward_compatibility_is_enforced(infra_stack: Settings) -> None:
    subject = f"compat-{uuid.uuid4().hex[:8]}-value"
    client = SchemaRegistryClient({"url": infra_stack.registry.url})
    assert client.get_compatibility() == "BACKWARD"
    client.register_schema(subject, Schema(reader_schema(), "AVRO"))

    evolved = json.loads(reader_schema())
    evolved["fields"].append(
        {"name": "region", "type": ["null", "string"], "default": None, "doc": "Region."}
    )
    assert client.register_schema(subject, Schema(json.dumps(evolved), "AVRO")) > 0

    broken = json.loads(reader_schema())
    broken["fields"].append({"name": "required_now", "type": "string", "doc": "No default."})
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(json.dumps(broken), "AVRO"))
    assert refused.value.http_status_code == 409
    assert "required_now" in str(refused.value)
