"""Kafka side of the producers: producer config, delivery reports, publishing.

Follows the confluent-kafka-python examples: an idempotent producer, key =
entity id so one entity's versions stay ordered in one partition, ``poll(0)``
after each ``produce`` to serve delivery reports, and a delivery callback that
counts failures and logs the key with the error.

The poller's publisher is transactional: one poll = one Kafka transaction
holding its change records, its dead letters and its new cursor, so either
all of them become visible to ``read_committed`` consumers or none does.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from core.settings import KafkaSettings, Settings
from producers.errors import ProducerFencedError, PublishError, RecordRejectedError
from producers.metrics import COMMIT_RETRIES, DELIVERY_FAILURES, RECORDS_DELIVERED
from producers.serialization import build_value_serializer, make_key_serializer

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]
Serializer = Callable[[Any, SerializationContext], bytes | None]

# How long to serve delivery reports when librdkafka's local queue is full
# before trying the same produce again.
_QUEUE_FULL_WAIT_S = 0.5
#: Commit attempts while the error is retriable (each waits up to the flush timeout).
_COMMIT_ATTEMPTS = 5
#: Keys are entity ids; a hostile one is cut, it is only a partitioning hint here.
_KEY_MAX_BYTES = 1024


def capped_payload(raw: bytes, max_bytes: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """``raw`` cut to ``max_bytes``, with headers saying so (pure).

    A cut payload keeps its head; its original size and SHA-256 identify it.
    """
    if len(raw) <= max_bytes:
        return raw, []
    digest = hashlib.sha256(raw).hexdigest()
    return raw[:max_bytes], [
        ("truncated", b"true"),
        ("original_size", str(len(raw)).encode()),
        ("original_sha256", digest.encode()),
    ]


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` the publisher uses."""

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: DeliveryCallback | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None: ...

    def poll(self, timeout: float = -1) -> int: ...

    def flush(self, timeout: float = -1) -> int: ...


class TransactionalProducerLike(ProducerLike, Protocol):
    """The transaction API of ``confluent_kafka.Producer``."""

    def init_transactions(self, timeout: float = -1) -> None: ...

    def begin_transaction(self) -> None: ...

    def commit_transaction(self, timeout: float = -1) -> None: ...

    def abort_transaction(self, timeout: float = -1) -> None: ...


Stage = Literal["page", "record"]


@dataclass(frozen=True)
class DeadLetter:
    """A page or record that could not become a change event, kept exactly as received."""

    stage: Stage
    reason: str
    raw: bytes
    error_class: str
    key: str | None = None

    def headers(self, *, source: str, poll_id: str) -> list[tuple[str, bytes]]:
        """Kafka headers of the dead-letter record (UTF-8 values)."""
        return [
            ("reason", self.reason.encode()),
            ("source", source.encode()),
            ("poll_id", poll_id.encode()),
            ("error_class", self.error_class.encode()),
            ("stage", self.stage.encode()),
        ]


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


def transactional_producer_config(
    kafka: KafkaSettings, *, client_id: str, transactional_id: str
) -> dict[str, Any]:
    """The producer config plus a ``transactional.id`` (one per source, stable across restarts).

    A stable id is what lets a restarted poller fence its crashed predecessor:
    ``init_transactions`` aborts the transaction the old process left open.
    """
    return {
        **producer_config(kafka, client_id=client_id),
        "transactional.id": transactional_id,
        "transaction.timeout.ms": int(kafka.transaction_timeout_s * 1000),
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
        dead_letter_topic: str | None = None,
        cursor_topic: str | None = None,
        transactional: bool = False,
        dead_letter_max_bytes: int = 512 * 1024,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.report = DeliveryReport(topic)
        self._value_serializer = value_serializer
        self._key_serializer = key_serializer
        self.dead_letter_topic = dead_letter_topic
        self.cursor_topic = cursor_topic
        self.transactional = transactional
        self.dead_letter_max_bytes = dead_letter_max_bytes
        # Dead letters and cursors are counted apart from the change events.
        self.side_report = DeliveryReport(dead_letter_topic or "side")

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
        self._produce(self.topic, key_bytes, value_bytes, None, self.report)

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding delivery reports; returns how many are still outstanding."""
        return self.producer.flush(timeout_s)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None,
        report: DeliveryCallback,
    ) -> None:
        """``produce`` one record, serving delivery reports while the local queue is full.

        A record Kafka refuses up front (larger than the producer's or the
        topic's limit, a bad header) raises ``RecordRejectedError``: nothing of it
        was queued, so the transaction is intact and the caller can dead-letter
        it instead of failing the poll again and again.
        """
        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=key, on_delivery=report, headers=headers
                )
                break
            except BufferError:
                # librdkafka's local queue is full: serve delivery reports to make room.
                self.producer.poll(_QUEUE_FULL_WAIT_S)
            except KafkaException as error:
                kafka_error = error.args[0] if error.args else None
                if isinstance(kafka_error, KafkaError) and kafka_error.fatal():
                    raise _publish_error("the producer failed", error) from error
                raise RecordRejectedError(f"Kafka refused a record for {topic}: {error}") from error
        self.producer.poll(0)

    def _produce_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None
    ) -> None:
        self._produce(topic, key, value, headers, self.side_report)

    def dead_letter(self, letter: DeadLetter, *, source: str, poll_id: str) -> None:
        """Produce one dead letter: key = entity id when known, value = the raw payload.

        The payload is capped (``dead_letter_max_bytes``): a hostile or huge page
        keeps its head, its size and its SHA-256 in the headers, and never
        becomes a record Kafka refuses.
        """
        if self.dead_letter_topic is None:
            raise PublishError("no dead-letter topic configured for this publisher")
        key = letter.key.encode()[:_KEY_MAX_BYTES] if letter.key is not None else None
        raw, headers = capped_payload(letter.raw, self.dead_letter_max_bytes)
        self._produce_raw(
            self.dead_letter_topic,
            key,
            raw,
            letter.headers(source=source, poll_id=poll_id) + headers,
        )

    def save_cursor(self, source: str, payload: bytes) -> None:
        """Produce a source's cursor record (key = source name) to the compacted cursor topic."""
        if self.cursor_topic is None:
            raise PublishError("no cursor topic configured for this publisher")
        self._produce_raw(self.cursor_topic, source.encode(), payload, None)

    def _txn(self) -> TransactionalProducerLike:
        return cast(TransactionalProducerLike, self.producer)

    def begin(self) -> None:
        """Start the poll's transaction (nothing to do without transactions)."""
        if self.transactional:
            try:
                self._txn().begin_transaction()
            except KafkaException as error:
                raise _publish_error("cannot begin a transaction", error) from error

    def commit(self, timeout_s: float) -> bool:
        """Make everything produced since ``begin`` visible; False when it was aborted.

        Without transactions this flushes and reports whether nothing is left
        outstanding. With them, Confluent's transactional pattern: a retriable
        error (a timeout) retries the commit, which then completes the same
        transaction (aborting would resend records the broker may already have
        committed); an error that requires it aborts the transaction (nothing of
        it becomes visible); any other error is fatal and raises
        ``ProducerFencedError``: this producer can never commit again.
        """
        if not self.transactional:
            # The caller compares delivery-report failures before and after.
            return self.flush(timeout_s) == 0
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            try:
                self._txn().commit_transaction(timeout_s)
                return True
            except KafkaException as error:
                kafka_error = error.args[0] if error.args else None
                if not isinstance(kafka_error, KafkaError) or kafka_error.fatal():
                    raise _publish_error("the producer was fenced or failed", error) from error
                if kafka_error.txn_requires_abort():
                    log.error("commit of the poll's transaction failed, aborting it: %s", error)
                    self.abort(timeout_s)
                    return False
                if kafka_error.retriable() and attempt < _COMMIT_ATTEMPTS:
                    COMMIT_RETRIES.inc()
                    log.warning(
                        "commit of the poll's transaction: %s (retriable), retrying (%d/%d)",
                        error,
                        attempt,
                        _COMMIT_ATTEMPTS,
                    )
                    continue
                raise _publish_error(
                    f"the commit failed {attempt} times and cannot be retried", error
                ) from error
        raise AssertionError("unreachable")

    def abort(self, timeout_s: float) -> None:
        """Abort the open transaction (after a failure); records produced in it are discarded."""
        if not self.transactional:
            self.flush(timeout_s)
            return
        try:
            self._txn().abort_transaction(timeout_s)
        except KafkaException as error:
            raise _publish_error("cannot abort the transaction", error) from error


def _publish_error(what: str, error: KafkaException) -> PublishError:
    kafka_error = error.args[0] if error.args else None
    if isinstance(kafka_error, KafkaError) and kafka_error.fatal():
        return ProducerFencedError(f"{what}: {kafka_error} (fatal: restart the poller)")
    return PublishError(f"{what}: {error}")


def make_change_publisher(
    settings: Settings,
    *,
    schema_name: str,
    client_id: str,
    transactional_id: str | None = None,
) -> ChangePublisher:
    """A publisher to ``settings.kafka.changes_topic`` with the schema registered up front.

    Registers ``schema_name`` under ``<topic>-value`` (``PublishError`` when the
    registry is down or refuses the schema), then builds the string key
    serializer and an idempotent producer. With ``transactional_id`` the
    producer is transactional and ``init_transactions`` has run (so a crashed
    predecessor's open transaction is aborted before this returns).
    """
    kafka = settings.kafka
    topic = kafka.changes_topic
    value_serializer, _ = build_value_serializer(settings.registry, topic, schema_name)
    if transactional_id is None:
        producer = Producer(producer_config(kafka, client_id=client_id))
    else:
        producer = Producer(
            transactional_producer_config(
                kafka, client_id=client_id, transactional_id=transactional_id
            )
        )
        try:
            producer.init_transactions(kafka.init_timeout_s)
        except KafkaException as error:
            raise _publish_error(
                f"cannot initialise transactions with Kafka at {kafka.bootstrap_servers}", error
            ) from error
    return ChangePublisher(
        producer,
        topic,
        value_serializer=value_serializer,
        key_serializer=make_key_serializer(),
        dead_letter_topic=kafka.dead_letter_topic,
        cursor_topic=kafka.cursor_topic,
        transactional=transactional_id is not None,
        dead_letter_max_bytes=settings.source.dead_letter_max_bytes,
    )
