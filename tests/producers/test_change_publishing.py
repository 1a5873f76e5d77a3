"""Serialization (Confluent wire format, TopicNameStrategy) and the publisher, without a broker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka.serialization import MessageField, SerializationContext

from core.schemas import load_schema_str, schema_path, value_subject
from core.settings import PROJECT_ROOT, KafkaSettings, RegistrySettings
from producers.errors import PublishError
from producers.kafka_io import DeliveryReport, producer_config
from producers.mapping import feature_to_quake_change
from producers.serialization import build_value_serializer

TOPIC = "test.quake_changes"  # the topic of the conftest's publisher
FEATURES = json.loads(
    (PROJECT_ROOT / "tests" / "data" / "usgs" / "feed_1_day_m1.geojson").read_text(encoding="utf-8")
)["features"]


def change(index: int = 0) -> dict[str, Any]:
    return feature_to_quake_change(
        FEATURES[index], source="usgs_earthquakes", poll_id="p1", produced_at_ms=1
    )


def test_schema_is_found_at_the_repository_root() -> None:
    assert schema_path("quake_change.avsc") == PROJECT_ROOT / "schemas" / "quake_change.avsc"
    assert json.loads(load_schema_str("quake_change.avsc"))["name"] == "QuakeChange"


def test_value_subject_is_the_topic_name_strategy() -> None:
    assert value_subject("usgs.quake_changes") == "usgs.quake_changes-value"


def test_producer_config_is_idempotent() -> None:
    kafka = KafkaSettings(bootstrap_servers="broker:29092", security_protocol="SASL_SSL")
    config = producer_config(kafka, client_id="poller")
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["bootstrap.servers"] == "broker:29092"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["client.id"] == "poller"


def test_published_records_are_keyed_by_entity_id_in_the_wire_format(
    make_publisher: Any, decode_value: Any
) -> None:
    publisher, producer, registry = make_publisher()
    records = [change(i) for i in range(3)]
    for record in records:
        publisher.publish(record["entity_id"], record)
    assert publisher.flush(5.0) == 0

    # One subject, one version: the serializer reuses what was registered up front.
    assert registry.get_subjects() == [f"{TOPIC}-value"]
    assert registry.get_versions(f"{TOPIC}-value") == [1]
    registered_id = registry.get_latest_version(f"{TOPIC}-value").schema_id
    assert [m.key() for m in producer.delivered] == [r["entity_id"].encode() for r in records]
    for message, record in zip(producer.delivered, records, strict=True):
        assert message.topic() == TOPIC
        schema_id, decoded = decode_value(message.value())
        assert schema_id == registered_id
        assert decoded == record
    assert (publisher.report.delivered, publisher.report.failed) == (3, 0)


def test_publish_polls_after_each_produce(make_publisher: Any) -> None:
    publisher, producer, _ = make_publisher()
    for i in range(4):
        publisher.publish(change(i)["entity_id"], change(i))
    assert producer.poll_calls == 4
    assert len(producer.delivered) == 4


def test_a_full_local_queue_is_waited_out(make_publisher: Any) -> None:
    publisher, producer, _ = make_publisher(queue_limit=0)
    real_poll = producer.poll

    def make_room(timeout: float = -1) -> int:
        producer.queue_limit = None  # serving delivery reports frees the queue
        return int(real_poll(timeout))

    producer.poll = make_room
    publisher.publish(change()["entity_id"], change())
    assert producer.buffer_errors == 1
    assert len(producer.delivered) == 1


def test_delivery_failures_are_counted_and_logged(
    make_publisher: Any, caplog: pytest.LogCaptureFixture
) -> None:
    failing = change(1)["entity_id"]
    publisher, _, _ = make_publisher(fail_keys=frozenset({failing}))
    for i in range(3):
        publisher.publish(change(i)["entity_id"], change(i))
    publisher.flush(5.0)
    assert (publisher.report.delivered, publisher.report.failed) == (2, 1)
    assert any(failing in r.getMessage() and "timed out" in r.getMessage() for r in caplog.records)


def test_a_value_that_does_not_match_the_schema_is_a_publish_error(make_publisher: Any) -> None:
    publisher, _, _ = make_publisher()
    broken = change()
    broken["updated_ms"] = "yesterday"
    with pytest.raises(PublishError, match=broken["entity_id"]):
        publisher.publish(broken["entity_id"], broken)


def test_delivery_report_counts(make_publisher: Any) -> None:
    report = DeliveryReport("t")
    _, producer, _ = make_publisher(fail_keys=frozenset({"b"}))
    for key in ("a", "b", "c"):
        producer.produce("t", value=b"v", key=key.encode(), on_delivery=report)
    producer.flush()
    assert (report.delivered, report.failed) == (2, 1)


def test_build_value_serializer_registers_the_subject_up_front(decode_value: Any) -> None:
    registry = RegistrySettings(url="mock://build-value-serializer", compatibility="")
    serializer, schema_id = build_value_serializer(registry, "quakes", "quake_change.avsc")
    payload = serializer(change(), SerializationContext("quakes", MessageField.VALUE))
    assert decode_value(payload) == (schema_id, change())
