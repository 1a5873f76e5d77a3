"""The poller: read what changed at an HTTP source since the cursor, produce it to Kafka.

One poll = fetch every page changed since the cursor (re-reading an overlap
window before it), drop versions already produced, sort the rest by (cursor
value, key) so each entity's versions reach its partition in order, map them,
and produce in ONE Kafka transaction: the change events, the dead letters
(unreadable page, drifted or unmappable record) and the new cursor record.
The commit is the commit point: the cursor moves if and only if every record
before it is acknowledged and visible, and after a crash the open transaction
is aborted by the next ``init_transactions`` (``read_committed`` consumers
never see its records).

``poll_once`` is one poll; ``run`` loops until a stop event is set (the entry
point sets it on SIGTERM), with a circuit breaker after repeated failures.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from core.settings import Settings
from producers.breaker import CircuitBreaker
from producers.cursor import Cursor, Version
from producers.cursor_store import CursorRecord, encode_cursor_record, load_cursor_state
from producers.errors import (
    PageError,
    ProducerFencedError,
    PublishError,
    RecordError,
    RecordRejectedError,
    SourceError,
)
from producers.http_client import BodyLimits, RetryPolicy, Sleep, get_json, make_http_client
from producers.json_guard import NonFiniteNumber
from producers.kafka_io import ChangePublisher, DeadLetter, make_change_publisher
from producers.metrics import (
    CIRCUIT_OPEN,
    CIRCUIT_OPENED,
    CURSOR_LAG_SECONDS,
    POLLS,
    PRODUCE_LATENCY_SECONDS,
    QUERY_SPLITS,
    RECORD_ERRORS,
    RECORDS_DEAD_LETTERED,
    RECORDS_DUPLICATE,
    RECORDS_FETCHED,
    RECORDS_PRODUCED,
    RECORDS_REJECTED,
    RECORDS_RESENT,
    TRANSACTIONS_ABORTED,
)
from producers.sources.base import (
    FetchPage,
    HttpSource,
    JsonObject,
    fetch_changes,
    field_drift,
    record_version,
)
from producers.sources.usgs import usgs_earthquakes

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
    #: Records that could not become change events (dead-lettered).
    invalid: int
    #: Change records Kafka acknowledged (and, with transactions, committed).
    produced: int
    #: Records Kafka refused or did not acknowledge (the poll's transaction was aborted).
    failed: int
    pages: int
    cursor: Cursor
    #: Why a page was unreadable (it was dead-lettered and the poll ended early).
    page_error: str | None = None
    #: Versions produced again after a crash aborted the transaction that first carried them.
    resent: int = 0
    #: Refused (too large) queries split in two; 0 when the poll was one query.
    splits: int = 0

    @property
    def ok(self) -> bool:
        """True when the whole poll was read and committed."""
        return self.page_error is None and self.failed == 0

    @property
    def eventful(self) -> bool:
        """True when the poll produced, dead-lettered or failed something (worth an INFO line)."""
        return bool(self.produced or self.invalid or self.failed or self.page_error)


@dataclass(frozen=True)
class Batch:
    """The records of one poll that are to be produced, in produce order."""

    records: list[tuple[Version, JsonObject]]
    duplicates: int
    invalid: list[RecordError]
    #: The records behind ``invalid``, in the same order (for the dead-letter topic).
    invalid_records: list[Any] = field(default_factory=list)


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
    invalid_records: list[Any] = []
    for record in records:
        try:
            version = record_version(source, record)
        except RecordError as error:
            invalid.append(error)
            invalid_records.append(record)
            continue
        # Offset paging can return one record twice when the result set grows
        # while the poll pages; the same version must be produced once.
        if not cursor.is_new(version) or version in selected:
            duplicates += 1
            continue
        selected[version] = record
    ordered = sorted(selected.items(), key=lambda item: (item[0][1], item[0][0]))
    return Batch(
        records=ordered, duplicates=duplicates, invalid=invalid, invalid_records=invalid_records
    )


def _raw_json(record: Any) -> bytes:
    # A record can hold what JSON cannot say (a NaN literal from the page): it is
    # written as text, so the dead letter still shows the record as it came.
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=_as_text).encode()


def _as_text(value: Any) -> str:
    return value.text if isinstance(value, NonFiniteNumber) else repr(value)


def record_letter(error: RecordError | str, record: Any, key: str | None) -> DeadLetter:
    """The dead letter of one record: its JSON as received, the reason, the error class."""
    if isinstance(error, RecordError):
        reason, error_class = str(error), type(error).__name__
    else:
        reason, error_class = error, "SchemaDriftError"
    return DeadLetter("record", reason, _raw_json(record), error_class, key)


def page_letter(error: PageError) -> DeadLetter:
    """The dead letter of an unreadable page: the raw body exactly as received."""
    return DeadLetter("page", str(error), error.raw, type(error).__name__, None)


@dataclass
class _Plan:
    """Everything one poll will write, computed before the transaction starts (pure)."""

    changes: list[tuple[Version, dict[str, Any]]] = field(default_factory=list)
    letters: list[tuple[Version | None, DeadLetter]] = field(default_factory=list)

    @property
    def versions(self) -> list[Version]:
        consumed = [version for version, _ in self.letters if version is not None]
        return [*(version for version, _ in self.changes), *consumed]


def plan_poll(source: HttpSource, batch: Batch, *, poll_id: str, produced_at_ms: int) -> _Plan:
    """Map each new version, or turn it into a dead letter (drift, unmappable, unreadable)."""
    plan = _Plan()
    for error, record in zip(batch.invalid, batch.invalid_records, strict=True):
        plan.letters.append((None, record_letter(error, record, error.record_id)))
    for version, record in batch.records:
        drift = field_drift(source, record)
        if drift is not None:
            plan.letters.append((version, record_letter(drift, record, version[0])))
            continue
        try:
            value = source.map_record(
                record, source=source.name, poll_id=poll_id, produced_at_ms=produced_at_ms
            )
        except RecordError as error:
            plan.letters.append((version, record_letter(error, record, version[0])))
            continue
        plan.changes.append((version, value))
    return plan


def poll_once(
    settings: Settings,
    cursor: Cursor | None = None,
    *,
    source: HttpSource | None = None,
    http: httpx.Client | None = None,
    publisher: ChangePublisher | None = None,
    flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S,
    clock_ms: Callable[[], int] | None = None,
    sleep: Sleep | None = None,
    resend_candidates: set[Version] | None = None,
    before_commit: BeforeCommit | None = None,
) -> PollSummary:
    """Poll the source once and produce its changes to ``settings.kafka.changes_topic``.

    ``source`` defaults to USGS from ``settings.source``. Without a
    ``publisher`` a transactional one is created (and its cursor loaded from
    the cursor topic when ``cursor`` is None); without ``http`` a client is
    created and closed here. A query the source refuses as too large is read
    in time slices (``fetch_changes``). Raises ``SourceError`` when the source
    cannot be read (or refuses a slice that cannot be narrowed further) and
    ``PublishError`` when records cannot be serialized; in both cases
    the cursor does not move. Unreadable pages and records go to the
    dead-letter topic inside the poll's transaction.
    """
    source = source or usgs_earthquakes(settings.source)
    now_ms = clock_ms or _wall_clock_ms
    if publisher is None:
        cursor_given = cursor is not None
        publisher, cursor, stored_resends = _open(settings, source, cursor)
        if not cursor_given:
            resend_candidates = stored_resends
    cursor = cursor or Cursor()
    policy = RetryPolicy.from_settings(settings.source)
    limits = BodyLimits.from_settings(settings.source)

    def poll_with(client: httpx.Client) -> PollSummary:
        return _poll(
            source,
            cursor,
            publisher,
            fetch_page=lambda params: get_json(
                client,
                source.url,
                params,
                policy=policy,
                sleep=sleep,
                source=source.name,
                limits=limits,
            ),
            flush_timeout_s=flush_timeout_s,
            now_ms=now_ms,
            resend_candidates=resend_candidates if resend_candidates is not None else set(),
            before_commit=before_commit,
        )

    if http is not None:
        return poll_with(http)
    with make_http_client(settings.source) as client:
        return poll_with(client)


def transactional_id(source: HttpSource) -> str:
    """The stable transactional id of a source's poller (one active poller per source)."""
    return f"streamhouse-poller-{source.name}"


def _client_id(source: HttpSource) -> str:
    return f"streamhouse-poller-{source.name}"


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _poll(
    source: HttpSource,
    cursor: Cursor,
    publisher: ChangePublisher,
    *,
    fetch_page: FetchPage,
    flush_timeout_s: float,
    now_ms: Callable[[], int],
    resend_candidates: set[Version],
    before_commit: BeforeCommit | None = None,
) -> PollSummary:
    poll_id = new_poll_id(now_ms())
    fetched = fetch_changes(source, cursor, fetch_page, now_ms=now_ms())
    RECORDS_FETCHED.labels(source=source.name).inc(len(fetched.records))
    if fetched.splits:
        QUERY_SPLITS.labels(source=source.name).inc(fetched.splits)
        log.info(
            "poll %s: the source refused the query as too large; read it in %d time slices "
            "(%d splits)",
            poll_id,
            fetched.slices,
            fetched.splits,
        )
    batch = select_new_versions(source, cursor, fetched.records)
    RECORDS_DUPLICATE.labels(source=source.name).inc(batch.duplicates)
    plan = plan_poll(source, batch, poll_id=poll_id, produced_at_ms=now_ms())
    if fetched.page_error is not None:
        plan.letters.append((None, page_letter(fetched.page_error)))

    if fetched.page_error is None:
        next_cursor = cursor.advance(
            plan.versions,
            high_water_ms=fetched.snapshot_ms,
            resolution_ms=source.cursor_resolution_ms,
            lookback_ms=source.cursor_lookback_ms,
        )
    else:
        next_cursor = cursor.remember(plan.versions)
    summary = PollSummary(
        poll_id=poll_id,
        fetched=len(fetched.records),
        duplicates=batch.duplicates,
        invalid=sum(1 for _, letter in plan.letters if letter.stage == "record"),
        produced=0,
        failed=0,
        pages=fetched.pages,
        cursor=next_cursor,
        page_error=str(fetched.page_error) if fetched.page_error is not None else None,
        splits=fetched.splits,
    )
    if not plan.changes and not plan.letters and next_cursor == cursor:
        _set_lag(source, cursor, now_ms)
        return summary  # an idle poll writes nothing, not even a transaction

    written = _write(
        source,
        plan,
        publisher,
        poll_id=poll_id,
        cursor=next_cursor,
        timeout_s=flush_timeout_s,
        before_commit=before_commit,
    )
    delivered, failed = written.delivered, written.failed
    if not written.committed:
        log.error(
            "poll %s: Kafka did not acknowledge every record; the transaction was aborted "
            "and the cursor stays at %s",
            poll_id,
            cursor.updated_ms,
        )
        _set_lag(source, cursor, now_ms)
        return replace(summary, cursor=cursor, produced=delivered, failed=failed)

    resent = sum(1 for version, _ in plan.changes if version in resend_candidates)
    resend_candidates.difference_update(plan.versions)
    RECORDS_PRODUCED.labels(source=source.name).inc(delivered)
    RECORDS_RESENT.labels(source=source.name).inc(resent)
    for letter in [*(letter for _, letter in plan.letters), *written.rejected]:
        RECORDS_DEAD_LETTERED.labels(source=source.name, stage=letter.stage).inc()
        if letter.stage == "record":
            RECORD_ERRORS.labels(source=source.name).inc()
        log.warning("poll %s: %s dead-lettered: %s", poll_id, letter.stage, letter.reason)
    _set_lag(source, next_cursor, now_ms)
    return replace(
        summary, produced=delivered, resent=resent, invalid=summary.invalid + len(written.rejected)
    )


#: Called inside a poll's transaction once everything is produced, just before the
#: commit, with the poll id and the number of versions the transaction carries: the
#: window a crash must not be able to corrupt. Fault tests put a crash there; it is
#: None in production.
BeforeCommit = Callable[[str, int], None]


@dataclass(frozen=True)
class _Written:
    committed: bool
    delivered: int
    failed: int
    #: Change records Kafka refused up front, dead-lettered in the same transaction.
    rejected: list[DeadLetter] = field(default_factory=list)


def _write(
    source: HttpSource,
    plan: _Plan,
    publisher: ChangePublisher,
    *,
    poll_id: str,
    cursor: Cursor,
    timeout_s: float,
    before_commit: BeforeCommit | None = None,
) -> _Written:
    """One transaction: cursor record, change events, dead letters."""
    report = publisher.report
    delivered_before = report.delivered
    failed_before = report.failed + publisher.side_report.failed
    started = time.monotonic()
    rejected: list[DeadLetter] = []
    publisher.begin()
    try:
        if publisher.cursor_topic is not None:
            # First in the transaction: if the poller dies mid-way, this record
            # (aborted, but in the log) tells the next one what it had sent.
            record = CursorRecord(source.name, poll_id, cursor, frozenset(plan.versions))
            publisher.save_cursor(source.name, encode_cursor_record(record))
        for version, value in plan.changes:
            try:
                publisher.publish(version[0], value)
            except RecordRejectedError as error:
                # Nothing of it was queued: the transaction goes on, the record is
                # dead-lettered (capped) instead of failing every poll from now on.
                RECORDS_REJECTED.labels(source=source.name).inc()
                rejected.append(
                    DeadLetter(
                        "record", str(error), _raw_json(value), type(error).__name__, version[0]
                    )
                )
        for letter in [*(letter for _, letter in plan.letters), *rejected]:
            publisher.dead_letter(letter, source=source.name, poll_id=poll_id)
        if before_commit is not None:
            before_commit(poll_id, len(plan.versions))
    except PublishError:
        TRANSACTIONS_ABORTED.labels(source=source.name, reason="error").inc()
        publisher.abort(timeout_s)
        raise
    committed = publisher.commit(timeout_s)
    delivered = report.delivered - delivered_before
    failed = report.failed + publisher.side_report.failed - failed_before
    if not committed or failed:
        TRANSACTIONS_ABORTED.labels(source=source.name, reason="error").inc()
        if publisher.transactional:
            # nothing of the transaction is visible
            return _Written(False, 0, len(plan.changes) - len(rejected))
        # Without transactions what was delivered stays delivered (at-least-once).
        return _Written(False, delivered, max(failed, len(plan.changes) - delivered))
    PRODUCE_LATENCY_SECONDS.labels(source=source.name).observe(time.monotonic() - started)
    return _Written(True, delivered, 0, rejected)


def _set_lag(source: HttpSource, cursor: Cursor, now_ms: Callable[[], int]) -> None:
    if cursor.updated_ms is not None:
        CURSOR_LAG_SECONDS.labels(source=source.name).set((now_ms() - cursor.updated_ms) / 1000)


def _log_summary(summary: PollSummary) -> None:
    level = logging.INFO if summary.eventful else logging.DEBUG
    log.log(
        level,
        "poll %s: fetched %d, produced %d, duplicates %d, dead-lettered %d, resent %d, cursor %s%s",
        summary.poll_id,
        summary.fetched,
        summary.produced,
        summary.duplicates,
        summary.invalid + (summary.page_error is not None),
        summary.resent,
        summary.cursor.updated_ms,
        f", page dead-lettered: {summary.page_error}" if summary.page_error else "",
    )


def _open(
    settings: Settings, source: HttpSource, cursor: Cursor | None
) -> tuple[ChangePublisher, Cursor, set[Version]]:
    """The transactional publisher of ``source`` and where to start from.

    Creating the publisher fences a previous poller of the same source and
    aborts its open transaction; only then is the committed cursor read (with
    the versions of aborted transactions, which will be sent again and counted).
    ``cursor``, when given, overrides the stored one.
    """
    publisher = make_change_publisher(
        settings,
        schema_name=source.value_schema,
        client_id=_client_id(source),
        transactional_id=transactional_id(source),
    )
    if cursor is not None:
        return publisher, cursor, set()
    state = load_cursor_state(settings.kafka, source.name)
    resend_candidates = set(state.aborted_versions)
    if state.aborted_transactions:
        TRANSACTIONS_ABORTED.labels(source=source.name, reason="crash").inc(
            state.aborted_transactions
        )
        log.warning(
            "%s: %d transaction(s) of a previous poller were aborted; %d version(s) "
            "will be sent again (invisible to read_committed consumers until then)",
            source.name,
            state.aborted_transactions,
            len(resend_candidates),
        )
    log.info("%s: starting from cursor %s", source.name, state.cursor.updated_ms)
    return publisher, state.cursor, resend_candidates


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
    before_commit: BeforeCommit | None = None,
) -> Cursor:
    """Poll every ``interval_s`` seconds until ``stop_event`` is set; return the last cursor.

    One HTTP client and one publisher serve all polls. Without a
    ``publisher``, a transactional one is created for the source's
    transactional id (fencing a crashed predecessor) and, unless ``cursor`` is
    given, the cursor is loaded from the cursor topic. A failed poll is logged
    and retried from the same cursor; after ``source.breaker_failures`` failed
    polls in a row the circuit breaker pauses polling (logged, and the
    ``streamhouse_poller_circuit_open`` gauge is 1). ``on_poll`` receives each
    poll's summary. The caller owns the signals: a SIGTERM handler only has to
    set ``stop_event``.
    """
    source = source or usgs_earthquakes(settings.source)
    resend_candidates: set[Version] = set()
    if publisher is None:
        publisher, cursor, resend_candidates = _open(settings, source, cursor)
    cursor = cursor or Cursor()
    breaker = CircuitBreaker(
        settings.source.breaker_failures, settings.source.breaker_open_s,
        settings.source.breaker_open_max_s,
    )  # fmt: skip
    CIRCUIT_OPEN.labels(source=source.name).set(0)
    outcome_failed = "failed"
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
                        sleep=stop_event.wait,
                        resend_candidates=resend_candidates,
                        before_commit=before_commit,
                    )
                except ProducerFencedError:
                    raise
                except (SourceError, PublishError) as error:
                    POLLS.labels(source=source.name, outcome=outcome_failed).inc()
                    log.error("poll of %s failed: %s", source.name, error)
                    failed = True
                except Exception:
                    # A bug met by some input must not end a long-running poller: the
                    # poll fails (logged with its traceback), the cursor stays, the
                    # breaker paces the retries.
                    POLLS.labels(source=source.name, outcome=outcome_failed).inc()
                    log.exception("poll of %s failed unexpectedly", source.name)
                    failed = True
                else:
                    cursor = summary.cursor
                    outcome = "ok" if summary.ok else "partial" if summary.failed == 0 else "failed"
                    POLLS.labels(source=source.name, outcome=outcome).inc()
                    _log_summary(summary)
                    if on_poll is not None:
                        on_poll(summary)
                    failed = not summary.ok
                if failed:
                    pause = breaker.record_failure()
                    if pause is not None:
                        _pause(source, breaker, pause, stop_event)
                        continue
                elif breaker.record_success():
                    log.info("%s: circuit breaker closed, polls succeed again", source.name)
                stop_event.wait(interval_s)
        finally:
            publisher.flush(flush_timeout_s)
    return cursor


def _pause(
    source: HttpSource, breaker: CircuitBreaker, pause_s: float, stop_event: threading.Event
) -> None:
    CIRCUIT_OPEN.labels(source=source.name).set(1)
    CIRCUIT_OPENED.labels(source=source.name).inc()
    log.warning(
        "%s: circuit breaker open after %d failed polls in a row; pausing %.1f s",
        source.name,
        breaker.consecutive_failures,
        pause_s,
    )
    # Jitter keeps a fleet of pollers from coming back in the same second.
    stop_event.wait(pause_s * random.uniform(0.9, 1.1))
    CIRCUIT_OPEN.labels(source=source.name).set(0)
