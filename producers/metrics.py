"""Prometheus metrics of the producers (process-wide, scraped by Prometheus).

Names follow ``streamhouse_<component>_<what>_total``; labels stay low-cardinality
(source and topic names only).
"""

from __future__ import annotations

from prometheus_client import Counter

RECORDS_FETCHED = Counter(
    "streamhouse_poller_records_fetched",
    "Records the poller read from the source, duplicates included.",
    ["source"],
)
RECORD_ERRORS = Counter(
    "streamhouse_poller_record_errors",
    "Records that could not become change events (missing or mistyped fields).",
    ["source"],
)
RECORDS_DELIVERED = Counter(
    "streamhouse_producer_records_delivered",
    "Records Kafka acknowledged.",
    ["topic"],
)
DELIVERY_FAILURES = Counter(
    "streamhouse_producer_delivery_failures",
    "Records Kafka did not acknowledge (the delivery report carried an error).",
    ["topic"],
)
