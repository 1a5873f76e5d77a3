"""Prometheus metrics of the producers (process-wide, scraped by Prometheus).

Names follow ``streamhouse_<component>_<what>_total``; labels stay low-cardinality
(source and topic names only).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

POLLS = Counter(
    "streamhouse_poller_polls",
    "Polls by outcome: ok (committed), partial (a page dead-lettered), failed.",
    ["source", "outcome"],
)
RECORDS_PRODUCED = Counter(
    "streamhouse_poller_records_produced",
    "Change records committed to the changes topic (inside a committed transaction).",
    ["source"],
)
RECORDS_DUPLICATE = Counter(
    "streamhouse_poller_records_skipped_duplicate",
    "Versions read again (overlap window, paging) and dropped because already sent.",
    ["source"],
)
RECORDS_DEAD_LETTERED = Counter(
    "streamhouse_poller_records_dead_lettered",
    "Pages and records committed to the dead-letter topic.",
    ["source", "stage"],
)
RECORDS_RESENT = Counter(
    "streamhouse_poller_records_resent",
    "Versions produced again after a restart because the transaction that first carried "
    "them was aborted (invisible to read_committed consumers).",
    ["source"],
)
TRANSACTIONS_ABORTED = Counter(
    "streamhouse_poller_transactions_aborted",
    "Poll transactions aborted: by this process (error) or found aborted at start (crash).",
    ["source", "reason"],
)
QUERY_SPLITS = Counter(
    "streamhouse_poller_query_splits",
    "Queries the source refused as too large and the poller split in two time slices.",
    ["source"],
)
HTTP_RESPONSES = Counter(
    "streamhouse_poller_http_responses",
    "HTTP responses by status code (timeout / error when none arrived).",
    ["source", "status"],
)
RETRY_WAITS = Counter(
    "streamhouse_poller_retry_waits",
    "Waits before an HTTP retry, by reason (backoff or retry_after).",
    ["source", "reason"],
)
RETRY_WAIT_SECONDS = Counter(
    "streamhouse_poller_retry_wait_seconds",
    "Seconds spent waiting before HTTP retries.",
    ["source", "reason"],
)
CURSOR_LAG_SECONDS = Gauge(
    "streamhouse_poller_cursor_lag_seconds",
    "Now minus the committed cursor (seconds).",
    ["source"],
)
CIRCUIT_OPEN = Gauge(
    "streamhouse_poller_circuit_open",
    "1 while the circuit breaker pauses polling after repeated failures.",
    ["source"],
)
CIRCUIT_OPENED = Counter(
    "streamhouse_poller_circuit_opened",
    "Times the circuit breaker opened.",
    ["source"],
)
PRODUCE_LATENCY_SECONDS = Histogram(
    "streamhouse_poller_produce_latency_seconds",
    "From the start of a poll's transaction to its commit (every record acknowledged).",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
COMMIT_RETRIES = Counter(
    "streamhouse_poller_commit_retries",
    "Transaction commits retried after a retriable error (e.g. a timeout): the same "
    "transaction completes, nothing is resent.",
)
RECORDS_REJECTED = Counter(
    "streamhouse_poller_records_rejected",
    "Change records Kafka refused before queueing them (e.g. over the size limit): "
    "dead-lettered instead.",
    ["source"],
)
