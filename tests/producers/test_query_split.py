"""A query the source refuses as too large is read in time slices (USGS: the 20,000 cap).

Pure: the declarative refusal (``QuerySplit``), slice bisection and merging over
an injected fetch function. Then the simulator's cap (``result_cap``,
``cap_counts_before_paging``) and whole polls against it on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from core.settings import PROJECT_ROOT, Settings, SourceSettings
from producers.cursor import Cursor
from producers.errors import SourceError
from producers.metrics import QUERY_SPLITS
from producers.poller import poll_once
from producers.simulator import (
    EventStore,
    SimulatorConfig,
    SimulatorServer,
    start_simulator,
    stop_simulator,
)
from producers.sources.base import FetchResult, HttpSource, TimeSlice, fetch_changes
from producers.sources.usgs import EVENT_TIME_SPLIT, format_updatedafter, usgs_earthquakes

DATA = PROJECT_ROOT / "tests" / "data" / "usgs"
SEED_FEATURES: list[dict[str, Any]] = json.loads(
    (DATA / "feed_7_day_m1.geojson").read_text(encoding="utf-8")
)["features"]
SEED_GENERATED_MS = 1550361489000
EXCEEDS_BODY = (DATA / "fdsn_error_400_exceeds_limit.txt").read_text(encoding="utf-8")
BAD_STARTTIME_BODY = (DATA / "fdsn_error_400_bad_starttime.txt").read_text(encoding="utf-8")
PRODUCED_AT_MS = 1_800_000_000_000
DAY_MS = 24 * 3600 * 1000


def refused(body: str = EXCEEDS_BODY, status: int = 400) -> SourceError:
    return SourceError(f"HTTP {status}", status_code=status, url="http://x/q", body=body)


# --- the declarative refusal (pure) -------------------------------------------------


def test_the_real_refusal_is_recognised_and_other_400s_are_not() -> None:
    assert EVENT_TIME_SPLIT.refusal(refused()) == (
        "78197 matching events exceeds search limit of 20000"
    )
    assert EVENT_TIME_SPLIT.refusal(refused(BAD_STARTTIME_BODY)) is None
    assert EVENT_TIME_SPLIT.refusal(refused(status=503)) is None
    assert EVENT_TIME_SPLIT.refusal(SourceError("timeout", url="http://x/q")) is None


def test_the_source_time_is_read_from_the_error_body() -> None:
    # "Request Submitted:\n2016-09-06T21:41:47+00:00" in the 2016 capture.
    assert EVENT_TIME_SPLIT.source_time_ms(refused()) == 1473198107000
    assert EVENT_TIME_SPLIT.source_time_ms(refused(BAD_STARTTIME_BODY)) == int(
        datetime(2026, 7, 26, 10, 6, 54, tzinfo=UTC).timestamp() * 1000
    )
    assert EVENT_TIME_SPLIT.source_time_ms(refused("no time here")) is None
    assert EVENT_TIME_SPLIT.source_time_ms(refused("Request Submitted:\nyesterday")) is None


def test_a_slice_is_bisected_at_whole_seconds_down_to_the_minimum() -> None:
    piece = TimeSlice(0, 9000, open_end=True)
    halves = piece.halves(EVENT_TIME_SPLIT)
    # Halves share the boundary second: [0, 4] + [5, 9] would lose a record at 4.5 s.
    assert halves == (TimeSlice(0, 4000), TimeSlice(4000, 9000, open_end=True))
    assert TimeSlice(0, 2000).halves(EVENT_TIME_SPLIT) == (
        TimeSlice(0, 1000),
        TimeSlice(1000, 2000),
    )
    assert TimeSlice(7000, 8000).halves(EVENT_TIME_SPLIT) is None
    wide_minimum = replace(EVENT_TIME_SPLIT, min_slice_ms=10_000)
    assert piece.halves(wide_minimum) is None


def test_slice_parameters_leave_the_newest_slice_open() -> None:
    closed = TimeSlice(1550275200000, 1550361599000)
    assert closed.params(EVENT_TIME_SPLIT) == {
        "starttime": "2019-02-16T00:00:00",
        "endtime": "2019-02-16T23:59:59",
    }
    assert TimeSlice(0, 5000, open_end=True).params(EVENT_TIME_SPLIT) == {
        "starttime": "1970-01-01T00:00:00"
    }


# --- bisection over an injected fetch (pure) ----------------------------------------


class CappedSource:
    """A fake FDSN query: events as (id, time_ms, updated_ms), refusing > cap matches."""

    def __init__(self, events: list[tuple[str, int, int]], cap: int, now_ms: int) -> None:
        self.events, self.cap, self.now_ms = events, cap, now_ms
        self.requests: list[dict[str, str]] = []

    def __call__(self, params: Mapping[str, str]) -> Mapping[str, Any]:
        self.requests.append(dict(params))
        start = _ms(params["starttime"]) if "starttime" in params else self.now_ms - 30 * DAY_MS
        end = _ms(params["endtime"]) if "endtime" in params else None
        after = _ms(params["updatedafter"]) if "updatedafter" in params else None
        matching = [
            e
            for e in sorted(self.events, key=lambda e: e[1])
            if e[1] >= start and (end is None or e[1] <= end) and (after is None or e[2] >= after)
        ]
        if len(matching) > self.cap:
            submitted = datetime.fromtimestamp(self.now_ms // 1000, tz=UTC).isoformat()
            raise SourceError(
                "HTTP 400",
                status_code=400,
                body=f"Error 400: Bad Request\n\n{len(matching)} matching events exceeds search "
                f"limit of {self.cap}. Modify the search to match fewer events.\n\n"
                f"Request Submitted:\n{submitted}\n",
            )
        offset, limit = int(params["offset"]), int(params["limit"])
        page = matching[offset - 1 : offset - 1 + limit]
        return {
            "metadata": {"generated": self.now_ms - len(self.requests)},
            "features": [
                {"id": key, "properties": {"time": time_ms, "updated": updated_ms}}
                for key, time_ms, updated_ms in page
            ],
        }


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1000


@pytest.fixture
def source() -> HttpSource:
    return usgs_earthquakes(
        SourceSettings(base_url="http://127.0.0.1:1/q", page_size=4, lookback_s=0)
    )


NOW_MS = SEED_GENERATED_MS


def events(count: int, *, every_ms: int = 3_600_437) -> list[tuple[str, int, int]]:
    # Event times with milliseconds, as the service has them; bounds are whole seconds.
    return [(f"ev{i}", NOW_MS - (i + 1) * every_ms, NOW_MS - i * 1000) for i in range(count)]


def test_a_query_under_the_cap_is_one_query(source: HttpSource) -> None:
    fetch = CappedSource(events(10), cap=20, now_ms=NOW_MS)
    result = fetch_changes(source, Cursor(), fetch, now_ms=0)
    assert len(result.records) == 10
    assert (result.splits, result.slices) == (0, 0)
    assert all("starttime" not in r and "endtime" not in r for r in fetch.requests)


def test_a_refused_query_is_read_in_slices_each_record_once(source: HttpSource) -> None:
    fetch = CappedSource(events(100), cap=7, now_ms=NOW_MS)
    cursor = Cursor(updated_ms=NOW_MS - 90_000)
    # The poller's clock is far off; the window comes from the refusal's "Request Submitted".
    result = fetch_changes(source, cursor, fetch, now_ms=PRODUCED_AT_MS)
    assert result.page_error is None
    ids = [r["id"] for r in result.records]
    assert sorted(ids) == sorted(f"ev{i}" for i in range(91))  # updatedafter kept as is
    assert len(ids) == len(set(ids))
    assert result.splits >= 1
    assert result.slices == result.splits + 1  # a binary tree: leaves = inner nodes + 1
    assert all(r["updatedafter"] == "2019-02-16T23:56:39" for r in fetch.requests)
    # Slices are inclusive whole-second ranges that tile the window; only the newest is open.
    sliced = [r for r in fetch.requests[1:] if r["offset"] == "1"]
    assert sum("endtime" not in r for r in sliced) >= 1
    window_start = format_updatedafter(NOW_MS - 30 * DAY_MS)
    assert min(r["starttime"] for r in sliced) == window_start
    # The earliest first page of the slices caps the cursor.
    assert result.snapshot_ms is not None and result.snapshot_ms < NOW_MS - 1


def test_records_between_and_on_whole_second_bounds_are_read_once(source: HttpSource) -> None:
    # 60 events in one minute, on whole seconds and at fractions; cap 3 bisects to seconds.
    dense = [(f"ev{i}", NOW_MS - 60_000 + i * 1000 + (i % 2) * 500, NOW_MS) for i in range(60)]
    fetch = CappedSource(dense, cap=3, now_ms=NOW_MS)
    result = fetch_changes(source, Cursor(), fetch, now_ms=0)
    ids = [r["id"] for r in result.records]
    assert sorted(ids) == sorted(e[0] for e in dense)
    assert len(ids) == len(set(ids))
    sliced = fetch.requests[1:]
    assert any(r.get("endtime") == other["starttime"] for r in sliced for other in sliced)


def test_a_refusal_on_a_later_page_splits_that_slice(source: HttpSource) -> None:
    fetch = CappedSource(events(30), cap=10, now_ms=NOW_MS)
    result = fetch_changes(source, Cursor(), fetch, now_ms=0)
    assert sorted(r["id"] for r in result.records) == sorted(f"ev{i}" for i in range(30))


def test_a_slice_that_cannot_be_narrowed_is_a_source_error(source: HttpSource) -> None:
    same_second = [(f"ev{i}", NOW_MS - 5000 + 300, NOW_MS) for i in range(3)]
    fetch = CappedSource(same_second, cap=2, now_ms=NOW_MS)
    with pytest.raises(SourceError) as caught:
        fetch_changes(source, Cursor(), fetch, now_ms=0)
    message = str(caught.value)
    assert "cannot be narrowed further (minimum slice 1 s)" in message
    assert "starttime=2019-02-16T23:58:04&endtime=2019-02-16T23:58:05" in message
    assert "3 matching events exceeds search limit of 2" in message
    assert caught.value.status_code == 400


def test_other_errors_are_not_split(source: HttpSource) -> None:
    def bad_request(params: Mapping[str, str]) -> Mapping[str, Any]:
        raise refused(BAD_STARTTIME_BODY)

    with pytest.raises(SourceError, match="HTTP 400") as caught:
        fetch_changes(source, Cursor(), bad_request, now_ms=0)
    assert caught.value.body == BAD_STARTTIME_BODY
    no_split = replace(source, query_split=None)
    with pytest.raises(SourceError):
        fetch_changes(no_split, Cursor(), CappedSource(events(10), 2, NOW_MS), now_ms=0)


def test_too_many_slices_is_a_source_error(source: HttpSource) -> None:
    assert source.query_split is not None
    guarded = replace(source, query_split=replace(source.query_split, max_slices=4))
    fetch = CappedSource(events(100), cap=7, now_ms=NOW_MS)
    with pytest.raises(SourceError, match="more than 4 time slices"):
        fetch_changes(guarded, Cursor(), fetch, now_ms=0)


def test_without_a_source_time_the_pollers_clock_places_the_window(source: HttpSource) -> None:
    fetch = CappedSource(events(20), cap=7, now_ms=NOW_MS)

    def without_time(params: Mapping[str, str]) -> Mapping[str, Any]:
        try:
            return fetch(params)
        except SourceError as error:
            body = (error.body or "").split("Request Submitted")[0]
            raise SourceError(str(error), status_code=400, body=body) from None

    result: FetchResult = fetch_changes(source, Cursor(), without_time, now_ms=NOW_MS + 999)
    assert len(result.records) == 20


# --- the simulator's cap -------------------------------------------------------------


class ManualClock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    store = EventStore(SEED_FEATURES, seed_time_ms=SEED_GENERATED_MS)
    server, thread = start_simulator(
        "127.0.0.1", 0, store, clock=ManualClock(SEED_GENERATED_MS + 500)
    )
    yield server
    stop_simulator(server, thread)


def test_the_simulator_cap_counts_after_paging_by_default(simulator: SimulatorServer) -> None:
    simulator.config = SimulatorConfig(result_cap=50)
    with httpx.Client(timeout=5.0) as client:
        page = client.get(simulator.query_url, params={"format": "geojson", "limit": 50})
        assert page.status_code == 200
        assert page.json()["metadata"]["count"] == 50
        whole = client.get(simulator.query_url, params={"format": "geojson", "limit": 51})
        assert whole.status_code == 400
        assert "51 matching events exceeds search limit of 50." in whole.text
        # The limit range is still the service's.
        big = client.get(simulator.query_url, params={"format": "geojson", "limit": 20000})
        assert "20000 matching events" not in big.text and big.status_code == 400


def test_the_simulator_cap_can_count_before_paging(simulator: SimulatorServer) -> None:
    simulator.config = SimulatorConfig(result_cap=50, cap_counts_before_paging=True)
    with httpx.Client(timeout=5.0) as client:
        response = client.get(simulator.query_url, params={"format": "geojson", "limit": 10})
        assert response.status_code == 400
        lines = response.text.split("\n")
        assert lines[2] == (
            "1304 matching events exceeds search limit of 50. "
            "Modify the search to match fewer events."
        )
        assert lines[10] == "2019-02-16T23:58:09+00:00"  # the simulated clock: the window anchor


# --- whole polls against the simulator -----------------------------------------------


def poll(server: SimulatorServer, publisher: Any, *, page_size: int = 20) -> Any:
    settings = Settings(
        source=SourceSettings(
            base_url=server.query_url, page_size=page_size, timeout_s=5.0, lookback_s=0
        )
    )
    return poll_once(
        settings,
        Cursor(),
        publisher=publisher,
        flush_timeout_s=1.0,
        clock_ms=lambda: PRODUCED_AT_MS,
    )


def _splits_metric() -> float:
    value = QUERY_SPLITS.labels(source="usgs_earthquakes")._value.get()
    assert isinstance(value, float)
    return value


def test_a_poll_over_the_cap_reads_every_record_once_through_slices(
    simulator: SimulatorServer, make_publisher: Any
) -> None:
    simulator.config = SimulatorConfig(result_cap=50, cap_counts_before_paging=True)
    publisher, producer, _ = make_publisher()
    splits_before = _splits_metric()
    summary = poll(simulator, publisher)
    assert summary.ok
    assert summary.splits > 0
    assert _splits_metric() - splits_before == summary.splits
    assert (summary.fetched, summary.duplicates, summary.produced) == (1304, 0, 1304)
    changes = [m for m in producer.delivered if m.topic() == "test.quake_changes"]
    keys = [m.key().decode() for m in changes]
    assert sorted(keys) == sorted(f["id"] for f in SEED_FEATURES)
    assert len(keys) == len(set(keys))
    max_updated = max(f["properties"]["updated"] for f in SEED_FEATURES)
    assert summary.cursor.updated_ms == max_updated


def test_a_cap_under_the_page_size_is_split_too(
    simulator: SimulatorServer, make_publisher: Any
) -> None:
    # The service's own counting (after limit/offset) with pages larger than the cap.
    simulator.config = SimulatorConfig(result_cap=50)
    publisher, _, _ = make_publisher()
    summary = poll(simulator, publisher, page_size=500)
    assert summary.ok and summary.splits > 0
    assert (summary.fetched, summary.produced) == (1304, 1304)


def test_a_poll_that_cannot_be_narrowed_fails_and_writes_nothing(
    simulator: SimulatorServer, make_publisher: Any
) -> None:
    simulator.config = SimulatorConfig(result_cap=0, cap_counts_before_paging=True)
    publisher, producer, _ = make_publisher()
    with pytest.raises(SourceError, match="cannot be narrowed further"):
        poll(simulator, publisher)
    assert producer.delivered == []
