"""Fixtures of the producers' tests: a Kafka producer double kept in memory.

Serialization stays real: publishers under test use confluent-kafka's
``AvroSerializer`` bound to the in-memory ``mock://`` schema registry. Shared
through fixtures because the suite imports test modules in importlib mode,
where test helper modules are not importable by name.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from typing import Any

import fastavro
import pytest
from confluent_kafka import KafkaError, KafkaException

from core.settings import RegistrySettings
from producers.kafka_io import ChangePublisher
from producers.serialization import (
    load_schema,
    load_schema_str,
    make_key_serializer,
    make_registry_client,
    make_value_serializer,
    register_value_schema,
)

TOPIC = "test.quake_changes"
DLQ_TOPIC = "test.quake_changes.dlq"
CURSOR_TOPIC = "test.cursors"


class FakeMessage:
    """What a delivery callback reads of a message."""

    def __init__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._topic, self._key, self._value = topic, key, value
        self._headers = headers

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


class FakeProducer:
    """Queues produced messages; ``poll``/``flush`` deliver them (or fail the chosen keys)."""

    def __init__(
        self,
        fail_keys: frozenset[str] = frozenset(),
        queue_limit: int | None = None,
        max_message_bytes: int | None = None,
    ) -> None:
        self.fail_keys = fail_keys
        self.queue_limit = queue_limit
        self.max_message_bytes = max_message_bytes
        self.delivered: list[FakeMessage] = []
        self.pending: list[tuple[FakeMessage, Callable[..., None] | None]] = []
        self.poll_calls = 0
        self.buffer_errors = 0

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: Callable[..., None] | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if self.queue_limit is not None and len(self.pending) >= self.queue_limit:
            self.buffer_errors += 1
            raise BufferError("Local: Queue full")
        if self.max_message_bytes is not None and len(value or b"") > self.max_message_bytes:
            # librdkafka refuses an over-size message in produce() itself, as here.
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.pending.append((FakeMessage(topic, key, value, headers), on_delivery))

    def poll(self, timeout: float = -1) -> int:
        self.poll_calls += 1
        served = 0
        while self.pending:
            message, callback = self.pending.pop(0)
            key_text = (message.key() or b"").decode()
            error = KafkaError(KafkaError._MSG_TIMED_OUT) if key_text in self.fail_keys else None
            if error is None:
                self.delivered.append(message)
            if callback is not None:
                callback(error, message)
            served += 1
        return served

    def flush(self, timeout: float = -1) -> int:
        self.poll(timeout)
        return 0


def _make_publisher(producer: FakeProducer, topic: str = TOPIC) -> tuple[ChangePublisher, Any]:
    """A publisher with real serializers on a fresh mock registry; returns it and the registry."""
    registry = make_registry_client(RegistrySettings(url=f"mock://{uuid.uuid4().hex}"))
    schema = load_schema("quake_change.avsc")
    register_value_schema(registry, topic, schema, compatibility=None)
    publisher = ChangePublisher(
        producer,
        topic,
        value_serializer=make_value_serializer(registry, schema),
        key_serializer=make_key_serializer(),
        dead_letter_topic=DLQ_TOPIC,
        cursor_topic=CURSOR_TOPIC,
    )
    return publisher, registry


def _decode_value(payload: bytes, schema_str: str | None = None) -> tuple[int, dict[str, Any]]:
    """(schema id, record) of a Confluent wire-format Avro value."""
    assert payload[0] == 0, "magic byte"
    schema_id = int.from_bytes(payload[1:5], "big")
    schema = fastavro.parse_schema(json.loads(schema_str or load_schema_str("quake_change.avsc")))
    record = fastavro.schemaless_reader(io.BytesIO(payload[5:]), schema, None)
    assert isinstance(record, dict)
    return schema_id, record


PublisherFactory = Callable[..., tuple[ChangePublisher, FakeProducer, Any]]


@pytest.fixture
def make_publisher() -> PublisherFactory:
    """Factory: ``make_publisher(fail_keys=..., queue_limit=...)``.

    Returns (publisher, producer double, mock registry client).
    """

    def make(
        fail_keys: frozenset[str] = frozenset(),
        queue_limit: int | None = None,
        max_message_bytes: int | None = None,
    ) -> tuple[ChangePublisher, FakeProducer, Any]:
        producer = FakeProducer(
            fail_keys=fail_keys, queue_limit=queue_limit, max_message_bytes=max_message_bytes
        )
        publisher, registry = _make_publisher(producer)
        return publisher, producer, registry

    return make


@pytest.fixture
def decode_value() -> Callable[[bytes], tuple[int, dict[str, Any]]]:
    """Decoder of a Confluent wire-format QuakeChange value: (schema id, record)."""
    return _decode_value
