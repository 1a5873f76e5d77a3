"""Contract tests: the same assertions run over real USGS responses and over the simulator.

If the simulator drifts from the real API's shape (envelope keys and order,
property order and types, separators, bbox, error layout), these fail on the
simulator side while still passing on the fixtures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import PROJECT_ROOT
from producers.simulator import EventStore, SimulatorServer, start_simulator, stop_simulator
from producers.simulator.render import query_metadata, render_feature_collection

FIXTURES = PROJECT_ROOT / "tests" / "data" / "usgs"
GEOJSON_FILES = sorted(FIXTURES.glob("*.geojson"))
ERROR_FILES = sorted(FIXTURES.glob("fdsn_error_*.txt"))
SEED = FIXTURES / "feed_7_day_m1.geojson"

PROPERTY_ORDER = [
    "mag", "place", "time", "updated", "tz", "url", "detail", "felt", "cdi", "mmi", "alert",
    "status", "tsunami", "sig", "net", "code", "ids", "sources", "types", "nst", "dmin", "rms",
    "gap", "magType", "type", "title",
]  # fmt: skip
NUMBER = (int, float)
# JSON types each property may have (None always allowed): what the fixtures show.
PROPERTY_TYPES: dict[str, tuple[type, ...]] = {
    "mag": NUMBER, "place": (str,), "time": (int,), "updated": (int,), "tz": (int,),
    "url": (str,), "detail": (str,), "felt": (int,), "cdi": NUMBER, "mmi": NUMBER,
    "alert": (str,), "status": (str,), "tsunami": (int,), "sig": (int,), "net": (str,),
    "code": (str,), "ids": (str,), "sources": (str,), "types": (str,), "nst": (int,),
    "dmin": NUMBER, "rms": NUMBER, "gap": NUMBER, "magType": (str,), "type": (str,),
    "title": (str,),
}  # fmt: skip
REQUIRED_PROPERTIES = {"time", "updated", "url", "detail", "status", "tsunami", "net", "code"}


# --- the assertions -------------------------------------------------------------------


def assert_feature(feature: dict[str, Any]) -> None:
    """One GeoJSON feature has the summary format's keys, order and JSON types."""
    assert list(feature) == ["type", "properties", "geometry", "id"]
    assert feature["type"] == "Feature"
    props = feature["properties"]
    assert list(props) == PROPERTY_ORDER
    for name, value in props.items():
        if value is None:
            assert name not in REQUIRED_PROPERTIES, name
            continue
        assert isinstance(value, PROPERTY_TYPES[name]) and not isinstance(value, bool), name
    assert feature["id"] == props["net"] + props["code"]
    assert props["ids"].startswith(",") and props["ids"].endswith(",")
    assert f",{feature['id']}," in props["ids"]
    assert props["detail"].endswith(".geojson") or f"eventid={feature['id']}" in props["detail"]
    geometry = feature["geometry"]
    assert list(geometry) == ["type", "coordinates"]
    assert geometry["type"] == "Point"
    coordinates = geometry["coordinates"]
    assert len(coordinates) == 3
    assert all(isinstance(c, NUMBER) and not isinstance(c, bool) for c in coordinates)
    assert -180 <= coordinates[0] <= 180 and -90 <= coordinates[1] <= 90


def assert_feature_collection(raw: str, *, paged: bool) -> dict[str, Any]:
    """A query/feed response: envelope, metadata order, separators, count and bbox."""
    body = json.loads(raw)
    features = body["features"]
    keys = ["type", "metadata", "features"]
    assert list(body) in (keys, [*keys, "bbox"])
    assert body["type"] == "FeatureCollection"
    metadata = body["metadata"]
    expected = ["generated", "url", "title", "status", "api"]
    expected += ["limit", "offset", "count"] if paged else ["count"]
    assert list(metadata) == expected
    assert isinstance(metadata["generated"], int) and metadata["generated"] % 1000 == 0
    assert metadata["url"].startswith("http")
    assert metadata["title"].startswith("USGS")
    assert metadata["status"] == 200
    assert re.fullmatch(r"\d+\.\d+\.\d+", metadata["api"])
    assert metadata["count"] == len(features)
    if paged:
        assert isinstance(metadata["limit"], int) and isinstance(metadata["offset"], int)
        assert len(features) <= metadata["limit"] and metadata["offset"] >= 1
    # Features are written one per line after the first.
    assert raw.count(',\n{"type":"Feature"') == max(len(features) - 1, 0)
    assert raw.startswith('{"type":"FeatureCollection","metadata":{"generated":')
    for feature in features:
        assert_feature(feature)
    points = [f["geometry"]["coordinates"] for f in features]
    spans = len(points) > 1 and all(
        min(p[i] for p in points) < max(p[i] for p in points) for i in range(3)
    )
    if spans:
        lows = [min(p[i] for p in points) for i in range(3)]
        highs = [max(p[i] for p in points) for i in range(3)]
        assert body["bbox"] == [*lows, *highs]
    else:
        assert "bbox" not in body
    return body


def assert_fdsn_error(raw: str, *, status: int, reason: str) -> str:
    """The text/plain error layout; returns the message line."""
    lines = raw.split("\n")
    if lines[-1] == "":
        lines = lines[:-1]  # one trailing newline or none (both seen in real captures)
    assert len(lines) == 14
    assert lines[0] == f"Error {status}: {reason}"
    assert lines[1] == lines[3] == lines[5] == lines[8] == lines[11] == ""
    assert lines[2].strip() == lines[2] and lines[2]
    assert re.fullmatch(r"Usage details are available from https?://\S+/fdsnws/event/1", lines[4])
    assert lines[6] == "Request:"
    assert lines[7].startswith("/fdsnws/event/1/query?")
    assert lines[9] == "Request Submitted:"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", lines[10])
    assert lines[12] == "Service version:"
    assert re.fullmatch(r"\d+\.\d+\.\d+", lines[13])
    return lines[2]


# --- over the real responses ----------------------------------------------------------


@pytest.mark.parametrize("path", GEOJSON_FILES, ids=lambda p: p.name)
def test_real_responses_meet_the_contract(path: Path) -> None:
    assert_feature_collection(path.read_text(encoding="utf-8"), paged=False)


@pytest.mark.parametrize("path", ERROR_FILES, ids=lambda p: p.name)
def test_real_errors_meet_the_contract(path: Path) -> None:
    message = assert_fdsn_error(path.read_text(encoding="utf-8"), status=400, reason="Bad Request")
    assert message.startswith("Bad starttime value") or "exceeds search limit of 20000" in message


@pytest.mark.parametrize("path", GEOJSON_FILES, ids=lambda p: p.name)
def test_rendering_a_real_response_gives_back_its_bytes(path: Path) -> None:
    raw = path.read_text(encoding="utf-8")
    body = json.loads(raw)
    assert render_feature_collection(body["features"], body["metadata"]) == raw


def test_query_metadata_matches_a_real_one() -> None:
    real = json.loads((FIXTURES / "fdsn_query_wobblealert.geojson").read_text(encoding="utf-8"))
    metadata = real["metadata"]
    rebuilt = query_metadata(
        generated_ms=metadata["generated"],
        url=metadata["url"],
        api=metadata["api"],
        count=metadata["count"],
        limit=None,
        offset=1,
    )
    assert json.dumps(rebuilt) == json.dumps(metadata)


# --- over the simulator ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    server, thread = start_simulator("127.0.0.1", 0, EventStore.from_geojson(SEED))
    yield server
    stop_simulator(server, thread)


def _get(server: SimulatorServer, query: str) -> httpx.Response:
    return httpx.get(server.query_url + "?" + query, timeout=5.0)


@pytest.mark.parametrize(
    ("query", "paged", "count"),
    [
        ("format=geojson", False, 1304),
        ("format=geojson&orderby=time-asc&limit=500&offset=1", True, 500),
        ("format=geojson&limit=500&offset=1001", True, 304),
        ("format=geojson&limit=1", True, 1),  # one feature: no bbox
        ("format=geojson&limit=0", True, 0),
        ("format=geojson&updatedafter=2030-01-01", False, 0),  # empty: no bbox
        ("format=geojson&minmagnitude=4&orderby=magnitude", False, None),
    ],
)
def test_simulator_responses_meet_the_contract(
    server: SimulatorServer, query: str, paged: bool, count: int | None
) -> None:
    response = _get(server, query)
    assert response.status_code == 200
    body = assert_feature_collection(response.text, paged=paged)
    if count is not None:
        assert body["metadata"]["count"] == count


def test_simulator_serves_the_seed_features_verbatim(server: SimulatorServer) -> None:
    raw_seed = SEED.read_text(encoding="utf-8")
    body = _get(server, "format=geojson").text
    # Same features, same order (newest first, as the feed), same bytes.
    seed_features = raw_seed[raw_seed.index('"features":[') : raw_seed.index('],"bbox"')]
    served_features = body[body.index('"features":[') : body.index('],"bbox"')]
    assert served_features == seed_features
    assert json.loads(body)["bbox"] == json.loads(raw_seed)["bbox"]


@pytest.mark.parametrize(
    ("query", "status", "reason", "message"),
    [
        (
            "format=geojson&starttime=not-a-date&limit=5",
            400,
            "Bad Request",
            'Bad starttime value "not-a-date". Valid values are ISO-8601 timestamps.',
        ),
        ("format=geojson&x=1", 400, "Bad Request", 'Unknown parameter "x".'),
        ("format=csv", 400, "Bad Request", 'Bad format value "csv". Valid values are: "geojson".'),
        (
            "format=geojson&eventtype=earthquake",
            501,
            "Not Implemented",
            "eventtype parameter is not supported by the simulator",
        ),
    ],
)
def test_simulator_errors_meet_the_contract(
    server: SimulatorServer, query: str, status: int, reason: str, message: str
) -> None:
    response = _get(server, query)
    assert response.status_code == status
    assert response.headers["content-type"] == "text/plain"
    assert assert_fdsn_error(response.text, status=status, reason=reason) == message


def test_simulator_error_echoes_the_request_like_the_real_capture(server: SimulatorServer) -> None:
    real = (FIXTURES / "fdsn_error_400_bad_starttime.txt").read_text(encoding="utf-8").split("\n")
    served = _get(server, "format=geojson&starttime=not-a-date&limit=5").text.split("\n")
    assert served[7] == real[7]
    assert served[2] == real[2]
