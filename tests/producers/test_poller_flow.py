"""The poller end to end against the simulator on loopback, with an in-memory producer.

Everything is real except the broker: HTTP paging over 127.0.0.1, mapping,
Avro serialization with the mock registry, delivery reports, cursor moves.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.settings import PROJECT_ROOT, Settings, SourceSettings
from producers.cursor import Cursor
from producers.errors import SourceError
from producers.poller import PollSummary, poll_once, run
from producers.simulator import (
    EventStore,
    SimulatorConfig,
    SimulatorServer,
    start_simulator,
    stop_simulator,
)

SEED = PROJECT_ROOT / "tests" / "data" / "usgs" / "feed_7_day_m1.geojson"
SEED_FEATURES: list[dict[str, Any]] = json.loads(SEED.read_text(encoding="utf-8"))["features"]
SEED_GENERATED_MS = 1550361489000
MAX_UPDATED_MS = max(f["properties"]["updated"] for f in SEED_FEATURES)
PRODUCED_AT_MS = 1_800_000_000_000


class ManualClock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class Harness:
    """A simulator, settings pointing at it, and a publisher with an in-memory producer."""

    def __init__(self, server: SimulatorServer, store: EventStore, clock: ManualClock) -> None:
        self.server, self.store, self.clock = server, store, clock
        self.settings = Settings(
            source=SourceSettings(
                base_url=server.query_url, page_size=500, timeout_s=5.0, lookback_s=0
            )
        )
        self.publisher: Any = None
        self.producer: Any = None

    def poll(self, cursor: Cursor | None = None) -> PollSummary:
        return poll_once(
            self.settings,
            cursor,
            publisher=self.publisher,
            flush_timeout_s=1.0,
            clock_ms=lambda: PRODUCED_AT_MS,
        )


@pytest.fixture
def harness(make_publisher: Any) -> Iterator[Harness]:
    store = EventStore(SEED_FEATURES, seed_time_ms=SEED_GENERATED_MS)
    clock = ManualClock(SEED_GENERATED_MS)
    server, thread = start_simulator("127.0.0.1", 0, store, clock=clock)
    harness = Harness(server, store, clock)
    harness.publisher, harness.producer, _ = make_publisher()
    yield harness
    stop_simulator(server, thread)


def changes(harness: Harness, topic: str = "test.quake_changes") -> list[Any]:
    """Messages the in-memory producer delivered to one topic (changes by default)."""
    return [m for m in harness.producer.delivered if m.topic() == topic]


def delivered(harness: Harness, decode_value: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(m.key().decode(), decode_value(m.value())[1]) for m in changes(harness)]


def test_first_poll_produces_every_event_once_in_version_order(
    harness: Harness, decode_value: Any
) -> None:
    summary = harness.poll()
    assert (summary.fetched, summary.pages) == (1304, 3)
    assert (summary.produced, summary.failed, summary.duplicates, summary.invalid) == (
        1304,
        0,
        0,
        0,
    )
    assert summary.cursor.updated_ms == MAX_UPDATED_MS

    messages = delivered(harness, decode_value)
    keys = [key for key, _ in messages]
    assert len(set(keys)) == 1304
    assert all(key == value["entity_id"] for key, value in messages)
    updated = [value["updated_ms"] for _, value in messages]
    assert updated == sorted(updated)
    assert {value["poll_id"] for _, value in messages} == {summary.poll_id}
    assert {value["source"] for _, value in messages} == {"usgs_earthquakes"}
    assert {value["produced_at_ms"] for _, value in messages} == {PRODUCED_AT_MS}
    assert {value["op"] for _, value in messages} == {"UPSERT"}


def test_a_second_poll_re_reads_the_last_second_but_produces_nothing(harness: Harness) -> None:
    first = harness.poll()
    second = harness.poll(first.cursor)
    floor_ms = MAX_UPDATED_MS - MAX_UPDATED_MS % 1000
    in_last_second = sum(1 for f in SEED_FEATURES if f["properties"]["updated"] >= floor_ms)
    assert second.fetched == second.duplicates == in_last_second >= 1
    assert second.produced == 0
    assert second.cursor == first.cursor
    assert len(changes(harness)) == 1304


def test_revisions_and_deletions_become_change_events(harness: Harness, decode_value: Any) -> None:
    cursor = harness.poll().cursor
    harness.clock.now_ms += 120_000
    revised_id, deleted_id = SEED_FEATURES[5]["id"], SEED_FEATURES[6]["id"]
    harness.store.revise(
        revised_id, harness.clock.now_ms - 2_000, {"mag": 3.3, "status": "reviewed"}
    )
    harness.store.delete(deleted_id, harness.clock.now_ms - 1_000)
    already = len(changes(harness))

    summary = harness.poll(cursor)
    assert (summary.produced, summary.failed) == (2, 0)
    new = delivered(harness, decode_value)[already:]
    assert [(key, value["op"]) for key, value in new] == [
        (revised_id, "UPSERT"),
        (deleted_id, "DELETE"),
    ]
    assert new[0][1]["quake"]["mag"] == 3.3
    assert new[1][1]["quake"]["status"] == "deleted"
    assert summary.cursor.updated_ms == harness.clock.now_ms - 1_000


def test_a_version_newer_than_the_snapshot_is_read_again_next_time(harness: Harness) -> None:
    cursor = harness.poll().cursor
    # A version stamped after the service's "generated" time of the first page
    # (as if it changed while the poll was paging).
    future_ms = harness.clock.now_ms + 10_000
    harness.store.revise(SEED_FEATURES[0]["id"], future_ms, {"mag": 1.1})
    summary = harness.poll(cursor)
    assert summary.produced == 1
    assert summary.cursor.updated_ms == harness.clock.now_ms - harness.clock.now_ms % 1000
    again = harness.poll(summary.cursor)
    assert (again.produced, again.duplicates) == (0, 1)


def test_failed_deliveries_keep_the_cursor(harness: Harness, make_publisher: Any) -> None:
    victim = SEED_FEATURES[10]["id"]
    harness.publisher, harness.producer, _ = make_publisher(fail_keys=frozenset({victim}))
    start = Cursor()
    summary = harness.poll(start)
    assert (summary.produced, summary.failed) == (1303, 1)
    assert summary.cursor == start

    harness.producer.fail_keys = frozenset()
    retry = harness.poll(summary.cursor)
    assert (retry.produced, retry.failed) == (1304, 0)  # at-least-once: everything again
    assert retry.cursor.updated_ms == MAX_UPDATED_MS


def test_unmappable_records_are_skipped_without_holding_the_cursor(harness: Harness) -> None:
    cursor = harness.poll().cursor
    harness.clock.now_ms += 60_000
    bad_id = SEED_FEATURES[3]["id"]
    harness.store.revise(bad_id, harness.clock.now_ms, {"mag": "big"})
    summary = harness.poll(cursor)
    assert (summary.invalid, summary.produced, summary.failed) == (1, 0, 0)
    assert summary.cursor.updated_ms == harness.clock.now_ms
    assert harness.poll(summary.cursor).invalid == 0  # not re-read as new


def test_an_unreachable_source_is_a_source_error(make_publisher: Any) -> None:
    store = EventStore(SEED_FEATURES[:1])
    server, thread = start_simulator("127.0.0.1", 0, store)
    url = server.query_url
    stop_simulator(server, thread)
    settings = Settings(source=SourceSettings(base_url=url, connect_timeout_s=1.0, timeout_s=1.0))
    publisher, _, _ = make_publisher()
    with pytest.raises(SourceError):
        poll_once(settings, publisher=publisher)


def test_an_error_status_is_a_source_error_with_the_body(harness: Harness) -> None:
    harness.settings = Settings(
        source=SourceSettings(base_url=harness.server.base_url + "/fdsnws/event/1/nothing")
    )
    with pytest.raises(SourceError) as raised:
        harness.poll()
    assert raised.value.status_code == 404
    assert "Error 404: Not Found" in str(raised.value)


def test_run_polls_until_stopped_and_returns_the_cursor(harness: Harness) -> None:
    stop = threading.Event()
    summaries: list[PollSummary] = []

    def on_poll(summary: PollSummary) -> None:
        summaries.append(summary)
        if len(summaries) == 2:
            stop.set()

    cursor = run(harness.settings, 0.01, stop, publisher=harness.publisher, on_poll=on_poll)
    assert [s.produced for s in summaries] == [1304, 0]
    assert cursor == summaries[-1].cursor
    assert cursor.updated_ms == MAX_UPDATED_MS


class OnRecord(logging.Handler):
    """Calls ``action`` for every log record (to react to a logged failure)."""

    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__()
        self.action = action
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.action()


def test_run_survives_a_failing_poll(harness: Harness) -> None:
    # The service refuses limit=500 while its limit is 100; the logged failure
    # of the first poll lifts it, so the next interval's poll succeeds.
    harness.server.config = SimulatorConfig(service_limit=100)
    recover = OnRecord(lambda: setattr(harness.server, "config", SimulatorConfig()))
    poller_log = logging.getLogger("producers.poller")
    poller_log.addHandler(recover)
    stop = threading.Event()
    summaries: list[PollSummary] = []

    def on_poll(summary: PollSummary) -> None:
        summaries.append(summary)
        stop.set()

    try:
        cursor = run(harness.settings, 0.01, stop, publisher=harness.publisher, on_poll=on_poll)
    finally:
        poller_log.removeHandler(recover)
    assert recover.count == 1
    assert [s.produced for s in summaries] == [1304]
    assert cursor.updated_ms == MAX_UPDATED_MS
