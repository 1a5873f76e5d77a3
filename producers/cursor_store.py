"""The durable cursor: one record per source on a compacted Kafka topic.

Why Kafka and not a file: the cursor describes a position in the source, and
the records it vouches for live in Kafka; writing it in the *same transaction*
as those records makes "records committed" and "cursor moved" one event. A
file next to the poller could say the opposite of the log after a crash, and
would not follow the poller to another machine or container.

The record (key = source name, value = UTF-8 JSON) holds the cursor
(``updated_ms``, ``seen``), the poll that wrote it and the versions that poll
produced. The last one is what makes re-sends countable: after a crash, the
aborted transaction's cursor record is still in the log (visible to a
``read_uncommitted`` reader only), so the restarted poller knows which
versions it is about to send a second time.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from core.settings import KafkaSettings
from producers.cursor import Cursor, Version
from producers.errors import PublishError


@dataclass(frozen=True)
class CursorRecord:
    """What one committed (or aborted) poll wrote about its source."""

    source: str
    poll_id: str
    cursor: Cursor
    #: Versions (change events and dead letters) this poll produced.
    produced: frozenset[Version]


@dataclass(frozen=True)
class CursorState:
    """A source's cursor as found in Kafka at start-up."""

    cursor: Cursor
    #: Versions of transactions aborted after the last committed cursor (a crash).
    aborted_versions: frozenset[Version]
    aborted_transactions: int


def _versions(items: Iterable[Iterable[object]]) -> frozenset[Version]:
    result: set[Version] = set()
    for item in items:
        key, updated = list(item)
        if not isinstance(key, str) or isinstance(updated, bool) or not isinstance(updated, int):
            raise ValueError(f"bad version {item!r}")
        result.add((key, updated))
    return frozenset(result)


def encode_cursor_record(record: CursorRecord) -> bytes:
    """The JSON value of a cursor record (sorted, so equal cursors give equal bytes)."""
    return json.dumps(
        {
            "source": record.source,
            "poll_id": record.poll_id,
            "updated_ms": record.cursor.updated_ms,
            "seen": sorted([key, updated] for key, updated in record.cursor.seen),
            "produced": sorted([key, updated] for key, updated in record.produced),
        },
        separators=(",", ":"),
    ).encode()


def decode_cursor_record(payload: bytes) -> CursorRecord:
    """Parse a cursor record; ``ValueError`` when it is not one."""
    body = json.loads(payload)
    if not isinstance(body, dict):
        raise ValueError("a cursor record is a JSON object")
    updated_ms = body.get("updated_ms")
    if updated_ms is not None and (isinstance(updated_ms, bool) or not isinstance(updated_ms, int)):
        raise ValueError("updated_ms must be an integer or null")
    return CursorRecord(
        source=str(body["source"]),
        poll_id=str(body["poll_id"]),
        cursor=Cursor(updated_ms=updated_ms, seen=_versions(body.get("seen", []))),
        produced=_versions(body.get("produced", [])),
    )


def state_from_logs(source: str, committed: list[bytes], uncommitted: list[bytes]) -> CursorState:
    """The cursor state from the cursor topic read twice (pure).

    ``committed`` is what a ``read_committed`` reader sees, ``uncommitted``
    what a ``read_uncommitted`` one sees (both: values of this source's key, in
    log order). The newest committed record is the cursor; records after it in
    the uncommitted log whose poll never committed belong to aborted
    transactions: their versions may have reached the broker and will be sent
    again.
    """
    committed_records = [decode_cursor_record(value) for value in committed]
    committed_polls = {record.poll_id for record in committed_records}
    last_poll = committed_records[-1].poll_id if committed_records else None
    after_last: list[CursorRecord] = []
    for value in uncommitted:
        record = decode_cursor_record(value)
        if record.poll_id == last_poll:
            after_last = []
        elif record.poll_id not in committed_polls:
            after_last.append(record)
    aborted: set[Version] = set()
    for record in after_last:
        aborted |= record.produced
    cursor = committed_records[-1].cursor if committed_records else Cursor()
    return CursorState(
        cursor=cursor, aborted_versions=frozenset(aborted), aborted_transactions=len(after_last)
    )


def _read_source_values(
    kafka: KafkaSettings, source: str, *, isolation: str, timeout_s: float
) -> list[bytes]:
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"streamhouse-cursor-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(kafka.cursor_topic, 0, OFFSET_BEGINNING)])
        wanted_key = source.encode()
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() > deadline:
                raise PublishError(
                    f"reading the cursor topic {kafka.cursor_topic} took longer than {timeout_s} s"
                )
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return values
                raise PublishError(f"cannot read the cursor topic {kafka.cursor_topic}: {error}")
            value = message.value()
            if message.key() == wanted_key and value is not None:
                values.append(bytes(value))
    finally:
        consumer.close()


def load_cursor_state(kafka: KafkaSettings, source: str, timeout_s: float = 60.0) -> CursorState:
    """Read ``source``'s cursor from ``kafka.cursor_topic`` (an empty cursor when none).

    Call it *after* the producer's ``init_transactions``: that aborts a crashed
    predecessor's open transaction, so the committed view is final.
    """
    committed = _read_source_values(kafka, source, isolation="read_committed", timeout_s=timeout_s)
    uncommitted = _read_source_values(
        kafka, source, isolation="read_uncommitted", timeout_s=timeout_s
    )
    try:
        return state_from_logs(source, committed, uncommitted)
    except (ValueError, KeyError, json.JSONDecodeError) as error:
        raise PublishError(
            f"the cursor topic {kafka.cursor_topic} holds a record that is not a cursor: {error}"
        ) from error
