"""Inspecting Kafka topics from the platform's tools (benchmarks, tests)."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

from streamhouse.settings import KafkaSettings


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
