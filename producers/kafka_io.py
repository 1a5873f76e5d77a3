"""Kafka side of the producers: producer config, delivery reports, publishing.

Follows the confluent-kafka-python examples: an idempotent producer, key =
entity id so one entity's versions stay ordered in one partition, ``poll(0)``
after each ``produce`` to serve delivery reports, and a delivery callback that
counts failures and logs the key with the error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from producers.errors import PublishError
from producers.metrics import DELIVERY_FAILURES, RECORDS_DELIVERED
from producers.serialization import build_value_serializer, make_key_serializer
from streamhouse.settings import KafkaSettings, Settings

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]
Serializer = Callable[[Any, SerializationContext], bytes | None]

# How long to serve delivery reports when librdkafka's local queue is full
# before trying the same produce again.
_QUEUE_FULL_WAIT_S = 0.5


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` the publisher uses."""

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: DeliveryCallback | None = None,
    ) -> None: ...

    def poll(self, timeout: float = -1) -> int: ...

    def flush(self, timeout: float = -1) -> int: ...


def producer_config(kafka: KafkaSettings, *, client_id: str) -> dict[str, Any]:
    """librdkafka properties of the change-event producer.

    ``enable.idempotence`` makes retries exactly-once per partition and in order;
    it requires ``acks=all``, which is set explicitly so the intent is visible.
    """
    return {
        **kafka.client_config(),
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
    }


class DeliveryReport:
    """Delivery callback: counts acknowledged and failed records, logs each failure."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.delivered = 0
        self.failed = 0

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        """Called by librdkafka from ``poll``/``flush`` once per produced record."""
        if error is None:
            self.delivered += 1
            RECORDS_DELIVERED.labels(topic=self.topic).inc()
            return
        self.failed += 1
        DELIVERY_FAILURES.labels(topic=self.topic).inc()
        key = message.key()
        key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        log.error("delivery to %s failed for key %s: %s", self.topic, key_text, error)


class ChangePublisher:
    """Serializes change events (key: entity id, value: Avro) and produces them to one topic."""

    def __init__(
        self,
        producer: ProducerLike,
        topic: str,
        *,
        value_serializer: Serializer,
        key_serializer: Serializer,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.report = DeliveryReport(topic)
        self._value_serializer = value_serializer
        self._key_serializer = key_serializer

    def publish(self, key: str, value: Mapping[str, Any]) -> None:
        """Serialize and hand one record to the producer; delivery is reported later.

        Raises ``PublishError`` when the record cannot be serialized (schema
        registry unreachable, value not matching the schema).
        """
        try:
            key_bytes = self._key_serializer(
                key, SerializationContext(self.topic, MessageField.KEY)
            )
            value_bytes = self._value_serializer(
                value, SerializationContext(self.topic, MessageField.VALUE)
            )
        except (SerializationError, SchemaRegistryError, ValueError, TypeError) as error:
            raise PublishError(
                f"cannot serialize record {key!r} for {self.topic}: {error}"
            ) from error
        while True:
            try:
                self.producer.produce(
                    self.topic, value=value_bytes, key=key_bytes, on_delivery=self.report
                )
                break
            except BufferError:
                # librdkafka's local queue is full: serve delivery reports to make room.
                self.producer.poll(_QUEUE_FULL_WAIT_S)
        self.producer.poll(0)

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding delivery reports; returns how many are still outstanding."""
        return self.producer.flush(timeout_s)


def make_change_publisher(
    settings: Settings, *, schema_name: str, client_id: str
) -> ChangePublisher:
    """A publisher to ``settings.kafka.changes_topic`` with the schema registered up front.

    Registers ``schema_name`` under ``<topic>-value`` (``PublishError`` when the
    registry is down or refuses the schema), then builds the string key
    serializer and an idempotent producer.
    """
    topic = settings.kafka.changes_topic
    value_serializer, _ = build_value_serializer(settings.registry, topic, schema_name)
    producer = Producer(producer_config(settings.kafka, client_id=client_id))
    return ChangePublisher(
        producer,
        topic,
        value_serializer=value_serializer,
        key_serializer=make_key_serializer(),
    )
