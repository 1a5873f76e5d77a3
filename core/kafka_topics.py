"""Inspecting Kafka topics from the platform's tools (benchmarks, tests)."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

from core.errors import UserFacingError
from core.settings import KafkaSettings


def partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    """The partition numbers of ``topic``; a user-facing error when it does not exist."""
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient(kafka.client_config()).list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise UserFacingError(
            f"Topic {topic} does not exist in Kafka at {kafka.bootstrap_servers}: start the stack "
            "(`streamhouse stack up kafka`) or create it."
        )
    return sorted(metadata.partitions)


def offset_span(kafka: KafkaSettings, topic: str) -> int:
    """Sum over partitions of high minus low watermark.

    That is the number of records only for a topic written without
    transactions (the load generator's): a transactional producer's commit
    markers take offsets too (count those topics with a read_committed consumer).
    """
    consumer = Consumer({**kafka.client_config(), "group.id": f"inspect-{uuid.uuid4()}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def resolve_offsets(
    kafka: KafkaSettings,
    topic: str,
    start: dict[int, int] | str | int,
    end: dict[int, int] | str | int,
) -> dict[int, tuple[int, int]]:
    """Concrete ``{partition: (first offset, end offset exclusive)}`` of a range of ``topic``.

    Each bound is ``"earliest"``, ``"latest"``, a ``{partition: offset}`` map
    (-2 earliest, -1 latest, as Spark reads them) or an epoch-ms timestamp,
    which means the first offset whose record timestamp is at or after it, as
    Spark's ``startingTimestamp``/``endingTimestamp`` do.
    """
    consumer = Consumer({**kafka.client_config(), "group.id": f"inspect-{uuid.uuid4()}"})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        marks = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in partitions
        }

        def at(bound: dict[int, int] | str | int) -> dict[int, int]:
            if isinstance(bound, int):
                found = consumer.offsets_for_times(
                    [TopicPartition(topic, p, bound) for p in partitions], timeout=10
                )
                return {tp.partition: tp.offset for tp in found}
            if isinstance(bound, str):
                return {p: -2 if bound == "earliest" else -1 for p in partitions}
            return {p: bound.get(p, -1) for p in partitions}

        return clamp_offsets(marks, at(start), at(end))
    finally:
        consumer.close()


def clamp_offsets(
    marks: dict[int, tuple[int, int]], start: dict[int, int], end: dict[int, int]
) -> dict[int, tuple[int, int]]:
    """Turn -2 / -1 (earliest / latest, or "no record at or after that time") into
    offsets within each partition's (low, high) watermarks; an empty range stays empty."""
    resolved = {}
    for partition, (low, high) in marks.items():
        first = start.get(partition, -2)
        last = end.get(partition, -1)
        first = low if first == -2 else high if first < 0 else min(max(first, low), high)
        last = low if last == -2 else high if last < 0 else min(max(last, low), high)
        resolved[partition] = (first, max(first, last))
    return resolved
