"""The poller: read what changed at an HTTP source since the cursor, produce it to Kafka.

One poll = fetch every page changed since the cursor, drop versions already
produced, sort the rest by (cursor value, key) so each entity's versions reach
its partition in order, map and produce them, then flush. The flush is the
commit point: only when every record was acknowledged does the cursor move, so
a failed poll is retried from the same place (at-least-once; downstream
deduplicates on (entity_id, updated_ms)).

``poll_once`` is one poll; ``run`` loops until a stop event is set (the entry
point sets it on SIGTERM). The cursor is returned and passed back in; a durable
cursor store will wrap exactly that.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from producers.cursor import Cursor, Version
from producers.errors import PublishError, RecordError, SourceError
from producers.http_client import get_json, make_http_client
from producers.kafka_io import ChangePublisher, make_change_publisher
from producers.metrics import RECORD_ERRORS, RECORDS_FETCHED
from producers.sources.base import FetchPage, HttpSource, JsonObject, fetch_all, record_version
from producers.sources.usgs import usgs_earthquakes
from streamhouse.settings import Settings

log = logging.getLogger(__name__)

#: How long a poll waits for Kafka to acknowledge its records before it counts
#: the rest as failed (the cursor then stays where it was).
DEFAULT_FLUSH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PollSummary:
    """What one poll did, and the cursor the next poll starts from."""

    poll_id: str
    #: Records read from the source, duplicates included.
    fetched: int
    #: Versions already produced by an earlier poll (re-read window) or repeated by paging.
    duplicates: int
    #: Records that could not become change events (skipped, logged).
    invalid: int
    #: Records Kafka acknowledged.
    produced: int
    #: Records Kafka refused or did not acknowledge within the flush timeout.
    failed: int
    pages: int
    cursor: Cursor


@dataclass(frozen=True)
class Batch:
    """The records of one poll that are to be produced, in produce order."""

    records: list[tuple[Version, JsonObject]]
    duplicates: int
    invalid: list[RecordError]


def new_poll_id(now_ms: int) -> str:
    """A readable, sortable, unique poll id: UTC start time plus a random suffix."""
    started = datetime.fromtimestamp(now_ms // 1000, tz=UTC).strftime("%Y%m%dT%H%M%S")
    return f"{started}.{now_ms % 1000:03d}Z-{uuid.uuid4().hex[:8]}"


def select_new_versions(source: HttpSource, cursor: Cursor, records: Sequence[JsonObject]) -> Batch:
    """Drop versions the cursor already saw (or seen twice in this poll), sort the rest.

    Pure. Sorting by (cursor value, key) is needed because the source orders
    by event time, not by update time; records whose key or cursor value
    cannot be read are returned as errors.
    """
    selected: dict[Version, JsonObject] = {}
    duplicates = 0
    invalid: list[RecordError] = []
    for record in records:
        try:
            version = record_version(source, record)
        except RecordError as error:
            invalid.append(error)
            continue
        # Offset paging can return one record twice when the result set grows
        # while the poll pages; the same version must be produced once.
        if not cursor.is_new(version) or version in selected:
            duplicates += 1
            continue
        selected[version] = record
    ordered = sorted(selected.items(), key=lambda item: (item[0][1], item[0][0]))
    return Batch(records=ordered, duplicates=duplicates, invalid=invalid)


def poll_once(
    settings: Settings,
    cursor: Cursor | None = None,
    *,
    source: HttpSource | None = None,
    http: httpx.Client | None = None,
    publisher: ChangePublisher | None = None,
    flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S,
    clock_ms: Callable[[], int] | None = None,
) -> PollSummary:
    """Poll the source once and produce its changes to ``settings.kafka.changes_topic``.

    ``source`` defaults to USGS from ``settings.source``; ``http`` and
    ``publisher`` are created (and closed / flushed) here when not given, so a
    long-running caller passes its own. Raises ``SourceError`` when the source
    cannot be read and ``PublishError`` when records cannot be serialized; in
    both cases nothing about the cursor changes. Records that cannot be mapped
    are counted as ``invalid`` and logged (the dead-letter topic comes later).
    """
    cursor = cursor or Cursor()
    source = source or usgs_earthquakes(settings.source)
    now_ms = clock_ms or _wall_clock_ms
    if publisher is None:
        publisher = make_change_publisher(
            settings, schema_name=source.value_schema, client_id=_client_id(source)
        )

    def poll_with(client: httpx.Client) -> PollSummary:
        return _poll(
            source,
            cursor,
            publisher,
            fetch_page=lambda params: get_json(client, source.url, params),
            flush_timeout_s=flush_timeout_s,
            now_ms=now_ms,
        )

    if http is not None:
        return poll_with(http)
    with make_http_client(settings.source) as client:
        return poll_with(client)


def _client_id(source: HttpSource) -> str:
    return f"streamhouse-poller-{source.name}"


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Produced:
    """Versions of one poll by outcome, filled while producing."""

    handed_over: list[Version] = field(default_factory=list)
    # Versions that could not be mapped are consumed too: they would fail again
    # on every poll, so they must not hold the cursor back (the dead-letter
    # topic will keep them).
    unmappable: list[Version] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)


def _produce(
    source: HttpSource,
    batch: Batch,
    publisher: ChangePublisher,
    *,
    poll_id: str,
    now_ms: Callable[[], int],
) -> _Produced:
    produced = _Produced()
    for version, record in batch.records:
        try:
            value = source.map_record(
                record, source=source.name, poll_id=poll_id, produced_at_ms=now_ms()
            )
        except RecordError as error:
            produced.errors.append(error)
            produced.unmappable.append(version)
            continue
        publisher.publish(version[0], value)
        produced.handed_over.append(version)
    return produced


def _poll(
    source: HttpSource,
    cursor: Cursor,
    publisher: ChangePublisher,
    *,
    fetch_page: FetchPage,
    flush_timeout_s: float,
    now_ms: Callable[[], int],
) -> PollSummary:
    poll_id = new_poll_id(now_ms())
    fetched = fetch_all(source, cursor, fetch_page)
    RECORDS_FETCHED.labels(source=source.name).inc(len(fetched.records))
    batch = select_new_versions(source, cursor, fetched.records)

    report = publisher.report
    delivered_before, failed_before = report.delivered, report.failed
    try:
        produced = _produce(source, batch, publisher, poll_id=poll_id, now_ms=now_ms)
    finally:
        # Also after a PublishError: what was handed over is still delivered
        # and reported before the error leaves this poll.
        outstanding = publisher.flush(flush_timeout_s)

    invalid = [*batch.invalid, *produced.errors]
    for record_error in invalid:
        RECORD_ERRORS.labels(source=source.name).inc()
        log.warning("poll %s: record skipped: %s", poll_id, record_error)
    delivered = report.delivered - delivered_before
    failed = report.failed - failed_before + outstanding
    if failed == 0:
        next_cursor = cursor.advance(
            [*produced.handed_over, *produced.unmappable],
            high_water_ms=fetched.snapshot_ms,
            resolution_ms=source.cursor_resolution_ms,
            lookback_ms=source.cursor_lookback_ms,
        )
    else:
        log.error(
            "poll %s: %d of %d records not acknowledged; the cursor stays at %s",
            poll_id,
            failed,
            len(produced.handed_over),
            cursor.updated_ms,
        )
        next_cursor = cursor
    return PollSummary(
        poll_id=poll_id,
        fetched=len(fetched.records),
        duplicates=batch.duplicates,
        invalid=len(invalid),
        produced=delivered,
        failed=failed,
        pages=fetched.pages,
        cursor=next_cursor,
    )


def run(
    settings: Settings,
    interval_s: float,
    stop_event: threading.Event,
    *,
    cursor: Cursor | None = None,
    source: HttpSource | None = None,
    publisher: ChangePublisher | None = None,
    on_poll: Callable[[PollSummary], None] | None = None,
    flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S,
) -> Cursor:
    """Poll every ``interval_s`` seconds until ``stop_event`` is set; return the last cursor.

    One HTTP client and one publisher (created here unless given) serve all
    polls. A poll that fails (source unreachable, registry down) is logged and
    retried at the next interval from the same cursor. ``on_poll`` receives
    each successful poll's summary (progress display, tests). The producer is
    flushed before returning. The caller owns the signals: a SIGTERM handler
    only has to set ``stop_event``.
    """
    cursor = cursor or Cursor()
    source = source or usgs_earthquakes(settings.source)
    if publisher is None:
        publisher = make_change_publisher(
            settings, schema_name=source.value_schema, client_id=_client_id(source)
        )
    with make_http_client(settings.source) as client:
        try:
            while not stop_event.is_set():
                try:
                    summary = poll_once(
                        settings,
                        cursor,
                        source=source,
                        http=client,
                        publisher=publisher,
                        flush_timeout_s=flush_timeout_s,
                    )
                except (SourceError, PublishError) as error:
                    log.error(
                        "poll of %s failed, retrying in %.0f s: %s", source.name, interval_s, error
                    )
                else:
                    cursor = summary.cursor
                    if on_poll is not None:
                        on_poll(summary)
                stop_event.wait(interval_s)
        finally:
            publisher.flush(flush_timeout_s)
    return cursor
