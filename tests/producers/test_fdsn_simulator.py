"""The simulator's query contract: parameter parsing (pure) and the running server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import PROJECT_ROOT
from producers.simulator import (
    EventStore,
    FdsnError,
    SimulatedClock,
    SimulatorConfig,
    SimulatorServer,
    start_simulator,
    stop_simulator,
)
from producers.simulator.query import parse_fdsn_time, parse_query
from producers.sources.usgs import format_updatedafter

SEED = PROJECT_ROOT / "tests" / "data" / "usgs" / "feed_7_day_m1.geojson"
SEED_FEATURES: list[dict[str, Any]] = json.loads(SEED.read_text(encoding="utf-8"))["features"]
SEED_GENERATED_MS = 1550361489000
DAY_MS = 24 * 3600 * 1000


class ManualClock:
    """A simulated clock the test moves by hand."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


class Simulator:
    """A running simulator plus an HTTP client for it."""

    def __init__(self, server: SimulatorServer, clock: ManualClock, store: EventStore) -> None:
        self.server = server
        self.clock = clock
        self.store = store
        self.client = httpx.Client(timeout=5.0)

    def get(self, **params: Any) -> httpx.Response:
        return self.client.get(self.server.query_url, params=params)

    def query(self, **params: Any) -> dict[str, Any]:
        response = self.get(**params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        return response.json()


@pytest.fixture
def sim_factory() -> Iterator[Any]:
    started: list[tuple[Simulator, Any]] = []

    def make(config: SimulatorConfig | None = None) -> Simulator:
        store = EventStore(SEED_FEATURES, seed_time_ms=SEED_GENERATED_MS)
        clock = ManualClock(SEED_GENERATED_MS + 500)
        server, thread = start_simulator("127.0.0.1", 0, store, clock=clock, config=config)
        simulator = Simulator(server, clock, store)
        started.append((simulator, thread))
        return simulator

    yield make
    for simulator, thread in started:
        simulator.client.close()
        stop_simulator(simulator.server, thread)


@pytest.fixture
def sim(sim_factory: Any) -> Simulator:
    return sim_factory()


def ids(body: dict[str, Any]) -> list[str]:
    return [f["id"] for f in body["features"]]


# --- parameter parsing (pure) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("2019-02-16", 1550275200000),
        ("2019-02-16T23:49:53", 1550360993000),
        ("2019-02-16T23:49:53.593", 1550360993000),  # fractions are dropped
        ("2019-02-16T23:49:53Z", 1550360993000),
        ("2019-02-17T01:49:53+02:00", 1550360993000),
        ("2019-02-16T20:49:53-0300", 1550360993000),
        ("2019-02-16 23:49", 1550360940000),
        ("2019-02-16T23:49", 1550360940000),
    ],
)
def test_times_are_read_to_whole_seconds(text: str, expected_ms: int) -> None:
    assert parse_fdsn_time(text) == expected_ms


@pytest.mark.parametrize(
    "text",
    ["not-a-date", "2019-02-30", "2019-02-16T25:00:00", "16/02/2019", "2019-02-16T", "1550360993"],
)
def test_unreadable_times(text: str) -> None:
    assert parse_fdsn_time(text) is None


def _error_of(query_string: list[tuple[str, str]], **kwargs: Any) -> FdsnError:
    with pytest.raises(FdsnError) as raised:
        parse_query(query_string, **kwargs)
    return raised.value


@pytest.mark.parametrize(
    ("pairs", "status", "message"),
    [
        (
            [("format", "geojson"), ("starttime", "not-a-date"), ("limit", "5")],
            400,
            'Bad starttime value "not-a-date". Valid values are ISO-8601 timestamps.',
        ),
        (
            [("format", "geojson"), ("start", "nope")],
            400,
            'Bad start value "nope". Valid values are ISO-8601 timestamps.',
        ),
        (
            [("format", "geojson"), ("limit", "20001")],
            400,
            'Bad limit value "20001". Valid values are 0 <= limit <= 20000',
        ),
        (
            [("format", "geojson"), ("limit", "-1")],
            400,
            'Bad limit value "-1". Valid values are 0 <= limit <= 20000',
        ),
        (
            [("format", "geojson"), ("offset", "0")],
            400,
            'Bad offset value "0". Valid values are 1 <= offset',
        ),
        (
            [("format", "geojson"), ("orderby", "newest")],
            400,
            'Bad orderby value "newest". Valid values are: "time", "time-asc", "magnitude", '
            '"magnitude-asc".',
        ),
        ([("format", "csv")], 400, 'Bad format value "csv". Valid values are: "geojson".'),
        ([("format", "geojson"), ("x", "1")], 400, 'Unknown parameter "x".'),
        (
            [("format", "geojson"), ("includedeleted", "yes")],
            400,
            'Bad includedeleted value "yes". Valid values are (case insensitive): "TRUE", "FALSE".',
        ),
        (
            [("format", "geojson"), ("minmagnitude", "big")],
            400,
            'Bad minmagnitude value "big". Valid values are numeric',
        ),
        (
            [("format", "geojson"), ("latitude", "35")],
            501,
            "latitude parameter is not supported by the simulator",
        ),
        # The first bad parameter in query-string order is the one reported.
        ([("y", "1"), ("limit", "nope"), ("format", "geojson")], 400, 'Unknown parameter "y".'),
    ],
)
def test_bad_parameters(pairs: list[tuple[str, str]], status: int, message: str) -> None:
    error = _error_of(pairs)
    assert (error.status, error.message) == (status, message)


def test_missing_format_is_refused_because_the_default_is_quakeml() -> None:
    error = _error_of([("limit", "5")])
    assert error.status == 400
    assert error.message.startswith('Bad format value "quakeml". Valid values are: "geojson".')


def test_the_limit_range_follows_the_service_limit() -> None:
    error = _error_of([("format", "geojson"), ("limit", "11")], service_limit=10)
    assert error.message == 'Bad limit value "11". Valid values are 0 <= limit <= 10'


def test_parsing_aliases_empty_values_and_repeats() -> None:
    query = parse_query(
        [
            ("format", "geojson"),
            ("start", "2019-02-16"),
            ("end", ""),  # empty values are ignored, whatever the name
            ("whatever", ""),
            ("minmag", "2.5"),
            ("limit", "10"),
            ("limit", "20"),  # a repeated parameter keeps its last value
            ("includedeleted", "TRUE"),
        ]
    )
    assert query.starttime_ms == 1550275200000
    assert query.endtime_ms is None
    assert query.minmagnitude == 2.5
    assert query.limit == 20
    assert query.offset == 1
    assert query.orderby == "time"
    assert query.include_deleted and not query.only_deleted
    only = parse_query([("format", "geojson"), ("includedeleted", "only")])
    assert only.include_deleted and only.only_deleted


# --- the running simulator ------------------------------------------------------------


def test_default_query_serves_every_seed_event_newest_first(sim: Simulator) -> None:
    body = sim.query(format="geojson")
    assert body["metadata"]["count"] == len(SEED_FEATURES) == len(body["features"])
    assert "limit" not in body["metadata"]
    times = [f["properties"]["time"] for f in body["features"]]
    assert times == sorted(times, reverse=True)
    assert body["features"] == sorted(SEED_FEATURES, key=lambda f: -f["properties"]["time"])
    assert body["metadata"]["generated"] == SEED_GENERATED_MS
    assert body["metadata"]["url"] == sim.server.base_url + "/fdsnws/event/1/query?format=geojson"


def test_limit_offset_pages_cover_the_result_once(sim: Simulator) -> None:
    everything = ids(sim.query(format="geojson", orderby="time-asc"))
    pages = []
    for offset in (1, 501, 1001, 1501):
        body = sim.query(format="geojson", orderby="time-asc", limit=500, offset=offset)
        assert body["metadata"]["limit"] == 500
        assert body["metadata"]["offset"] == offset
        assert body["metadata"]["count"] == len(body["features"])
        pages.append(ids(body))
    assert [len(p) for p in pages] == [500, 500, 304, 0]
    assert [i for p in pages for i in p] == everything
    assert sim.query(format="geojson", limit=5)["metadata"]["offset"] == 1


def test_updatedafter_is_inclusive_at_whole_seconds(sim: Simulator) -> None:
    updated = sorted(f["properties"]["updated"] for f in SEED_FEATURES)
    pivot_ms = updated[1000]
    floor_ms = pivot_ms - pivot_ms % 1000
    body = sim.query(format="geojson", updatedafter=format_updatedafter(pivot_ms))
    expected = {f["id"] for f in SEED_FEATURES if f["properties"]["updated"] >= floor_ms}
    assert set(ids(body)) == expected
    assert len(expected) >= len(SEED_FEATURES) - 1000
    # Milliseconds in the parameter are ignored, as the service does.
    with_fraction = format_updatedafter(pivot_ms) + f".{pivot_ms % 1000:03d}"
    assert set(ids(sim.query(format="geojson", updatedafter=with_fraction))) == expected


def test_starttime_and_endtime_are_inclusive(sim: Simulator) -> None:
    times = sorted(f["properties"]["time"] for f in SEED_FEATURES)
    start_ms, end_ms = times[100] - times[100] % 1000, times[200] - times[200] % 1000
    body = sim.query(
        format="geojson",
        starttime=format_updatedafter(start_ms),
        endtime=format_updatedafter(end_ms),
    )
    expected = {f["id"] for f in SEED_FEATURES if start_ms <= f["properties"]["time"] <= end_ms}
    assert set(ids(body)) == expected
    assert 90 <= len(expected) <= 110


def test_minmagnitude_and_magnitude_order(sim: Simulator) -> None:
    body = sim.query(format="geojson", minmagnitude=4.5, orderby="magnitude")
    mags = [f["properties"]["mag"] for f in body["features"]]
    assert mags == sorted(mags, reverse=True)
    assert mags and min(mags) >= 4.5
    assert len(mags) == sum(1 for f in SEED_FEATURES if (f["properties"]["mag"] or 0) >= 4.5)
    ascending = sim.query(format="geojson", orderby="magnitude-asc", limit=20)
    asc_mags = [f["properties"]["mag"] for f in ascending["features"]]
    assert asc_mags == sorted(asc_mags)


def test_without_starttime_only_the_last_30_days_match(sim: Simulator) -> None:
    sim.clock.now_ms = SEED_GENERATED_MS + 40 * DAY_MS
    assert sim.query(format="geojson")["metadata"]["count"] == 0
    assert sim.query(format="geojson", starttime="2019-01-01")["metadata"]["count"] == len(
        SEED_FEATURES
    )


def test_revisions_and_deletions_reach_updatedafter(sim: Simulator) -> None:
    sim.clock.now_ms += 60_000
    now = sim.clock.now_ms
    target, doomed = SEED_FEATURES[0]["id"], SEED_FEATURES[1]["id"]
    sim.store.revise(target, now, {"mag": 2.5, "status": "reviewed"})
    sim.store.delete(doomed, now + 1)
    since = format_updatedafter(now)

    changed = sim.query(format="geojson", updatedafter=since)
    assert ids(changed) == [target]  # deleted events are hidden by default
    assert changed["features"][0]["properties"]["mag"] == 2.5
    assert changed["features"][0]["properties"]["updated"] == now

    with_deleted = sim.query(format="geojson", updatedafter=since, includedeleted="true")
    assert sorted(ids(with_deleted)) == sorted([target, doomed])
    only = sim.query(format="geojson", includedeleted="only")
    assert ids(only) == [doomed]
    assert only["features"][0]["properties"]["status"] == "deleted"
    assert sim.query(format="geojson")["metadata"]["count"] == len(SEED_FEATURES) - 1


def test_errors_are_text_plain_with_the_service_layout(sim: Simulator) -> None:
    response = sim.client.get(sim.server.query_url + "?format=geojson&starttime=not-a-date&limit=5")
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/plain"
    lines = response.text.split("\n")
    assert lines[0] == "Error 400: Bad Request"
    assert lines[2] == 'Bad starttime value "not-a-date". Valid values are ISO-8601 timestamps.'
    assert lines[4] == f"Usage details are available from {sim.server.base_url}/fdsnws/event/1"
    assert lines[7] == "/fdsnws/event/1/query?format=geojson&amp;starttime=not-a-date&amp;limit=5"
    assert lines[10] == "2019-02-16T23:58:09+00:00"


def test_results_over_the_service_limit_are_refused(sim_factory: Any) -> None:
    sim = sim_factory(SimulatorConfig(service_limit=1000))
    response = sim.get(format="geojson")
    assert response.status_code == 400
    assert response.text.split("\n")[2] == (
        "1304 matching events exceeds search limit of 1000. "
        "Modify the search to match fewer events."
    )
    # The check counts what would be returned, so paging stays under it.
    assert sim.query(format="geojson", limit=1000)["metadata"]["count"] == 1000
    assert sim.query(format="geojson", offset=1000)["metadata"]["count"] == 305


def test_other_paths_are_not_found(sim: Simulator) -> None:
    response = sim.client.get(sim.server.base_url + "/fdsnws/event/1/count?format=geojson")
    assert response.status_code == 404
    assert response.text.startswith("Error 404: Not Found\n")


def test_unknown_parameters_over_http(sim: Simulator) -> None:
    response = sim.get(format="geojson", x="1")
    assert response.status_code == 400
    assert response.text.split("\n")[2] == 'Unknown parameter "x".'
    assert sim.get(format="geojson", mindepth="1").status_code == 501


# --- the store and the clock ----------------------------------------------------------


def test_store_keeps_versions_in_order() -> None:
    store = EventStore.from_geojson(SEED)
    assert len(store) == len(SEED_FEATURES)
    assert store.seed_time_ms == SEED_GENERATED_MS
    event_id = SEED_FEATURES[0]["id"]
    first = store.current_version(event_id)
    with pytest.raises(ValueError, match="not newer"):
        store.revise(event_id, first.updated_ms, {"mag": 9.9})
    store.revise(event_id, first.updated_ms + 1, {"mag": 9.9})
    history = store.history(event_id)
    assert [v.feature["properties"]["mag"] for v in history] == [
        SEED_FEATURES[0]["properties"]["mag"],
        9.9,
    ]
    # The seed feature itself is never mutated.
    assert SEED_FEATURES[0]["properties"]["mag"] != 9.9


def test_store_rejects_features_it_cannot_index() -> None:
    with pytest.raises(ValueError):
        EventStore([{"id": "x", "properties": {"time": 1}}])
    with pytest.raises(ValueError):
        EventStore([{"properties": {"time": 1, "updated": 2}}])


def test_simulated_clock_runs_at_wall_speed_from_its_anchor() -> None:
    wall = ManualClock(1_000_000)
    clock = SimulatedClock(SEED_GENERATED_MS, wall_ms=wall)
    assert clock() == SEED_GENERATED_MS
    wall.now_ms += 2_500
    assert clock() == SEED_GENERATED_MS + 2_500


def test_the_default_clock_starts_at_the_seed_time(tmp_path: Path) -> None:
    store = EventStore(SEED_FEATURES[:3], seed_time_ms=SEED_GENERATED_MS)
    server, thread = start_simulator("127.0.0.1", 0, store)
    try:
        body = httpx.get(server.query_url, params={"format": "geojson"}, timeout=5.0).json()
    finally:
        stop_simulator(server, thread)
    assert SEED_GENERATED_MS <= body["metadata"]["generated"] < SEED_GENERATED_MS + 60_000
    assert body["metadata"]["count"] == 3
