"""USGS feature -> QuakeChange mapping, checked against the .avsc and the real fixtures."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate

from core.settings import PROJECT_ROOT
from producers.errors import RecordError
from producers.mapping import (
    QUAKE_FIELD_ORDER,
    QUAKE_PROPERTIES,
    derive_region,
    feature_to_quake_change,
)

FIXTURES = PROJECT_ROOT / "tests" / "data" / "usgs"
SCHEMA_FILE = PROJECT_ROOT / "schemas" / "quake_change.avsc"
GEOJSON_FILES = sorted(FIXTURES.glob("*.geojson"))
CONTEXT = {"source": "usgs_earthquakes", "poll_id": "poll-1", "produced_at_ms": 1_700_000_000_000}


@pytest.fixture(scope="module")
def schema_json() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def parsed_schema(schema_json: dict[str, Any]) -> Any:
    return fastavro.parse_schema(schema_json)


def _features(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["features"]


def _sample_feature() -> dict[str, Any]:
    return copy.deepcopy(_features(FIXTURES / "feed_1_day_m1.geojson")[0])


def _double_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def test_fixture_files_are_present() -> None:
    names = {path.name for path in GEOJSON_FILES}
    assert {"feed_7_day_m1.geojson", "fdsn_query_wobblealert.geojson"} <= names


@pytest.mark.parametrize("path", GEOJSON_FILES, ids=lambda p: p.name)
def test_every_fixture_feature_maps_to_a_valid_record(path: Path, parsed_schema: Any) -> None:
    for feature in _features(path):
        record = feature_to_quake_change(feature, **CONTEXT)
        assert validate(record, parsed_schema, raise_errors=True)

        props = feature["properties"]
        lon, lat, depth = feature["geometry"]["coordinates"]
        quake = record["quake"]
        assert record["entity_id"] == feature["id"]
        assert record["op"] == "UPSERT"  # no fixture holds a deleted event
        assert record["updated_ms"] == props["updated"]
        assert record["event_time_ms"] == props["time"]
        assert (record["source"], record["poll_id"], record["produced_at_ms"]) == (
            CONTEXT["source"],
            CONTEXT["poll_id"],
            CONTEXT["produced_at_ms"],
        )
        assert (quake["longitude"], quake["latitude"], quake["depth_km"]) == (lon, lat, depth)
        for name in ("longitude", "latitude", "depth_km"):
            assert type(quake[name]) is float
        for avro_name, usgs_name, kind in QUAKE_PROPERTIES:
            value = props[usgs_name]
            if kind == "double":
                assert quake[avro_name] == _double_or_none(value), avro_name
                assert quake[avro_name] is None or type(quake[avro_name]) is float
            else:
                assert quake[avro_name] == value, avro_name
                if value is not None:
                    assert type(quake[avro_name]) is (str if kind == "string" else int)


@pytest.mark.parametrize("path", GEOJSON_FILES, ids=lambda p: p.name)
def test_records_survive_an_avro_round_trip(path: Path, parsed_schema: Any) -> None:
    records = [feature_to_quake_change(f, **CONTEXT) for f in _features(path)]
    buffer = io.BytesIO()
    fastavro.writer(buffer, parsed_schema, records)
    buffer.seek(0)
    assert list(fastavro.reader(buffer)) == records


def test_renames_and_casts_spot_check() -> None:
    feature = next(
        f
        for f in _features(FIXTURES / "feed_7_day_m1.geojson")
        if isinstance(f["properties"]["mag"], int)
    )
    record = feature_to_quake_change(feature, **CONTEXT)
    props = feature["properties"]
    quake = record["quake"]
    assert quake["mag"] == float(props["mag"]) and type(quake["mag"]) is float
    assert quake["mag_type"] == props["magType"]
    assert quake["tz_offset_min"] == props["tz"]
    assert quake["detail_url"] == props["detail"]
    assert quake["dmin_deg"] == _double_or_none(props["dmin"])
    assert quake["rms_s"] == _double_or_none(props["rms"])
    assert quake["gap_deg"] == _double_or_none(props["gap"])
    assert quake["event_type"] == props["type"]


def test_first_feature_of_the_day_feed_field_by_field() -> None:
    record = feature_to_quake_change(_sample_feature(), **CONTEXT)
    assert record["entity_id"] == "ci37532978"
    assert record["updated_ms"] == 1550360993593
    assert record["event_time_ms"] == 1550360775470
    assert record["quake"]["mag"] == 0.96
    assert record["quake"]["gap_deg"] == 37.0
    assert record["quake"]["tz_offset_min"] == -480
    assert record["quake"]["depth_km"] == 3.22
    assert record["quake"]["felt"] is None
    assert record["quake"]["title"] == "M 1.0 - 8km NE of Aguanga, CA"
    assert record["quake"]["place"] == "8km NE of Aguanga, CA"
    assert record["quake"]["region"] == "CA"


def test_rename_table_agrees_with_the_schema(schema_json: dict[str, Any]) -> None:
    top = [f["name"] for f in schema_json["fields"]]
    assert top == [
        "entity_id",
        "op",
        "updated_ms",
        "event_time_ms",
        "source",
        "poll_id",
        "produced_at_ms",
        "quake",
    ]
    quake_fields = next(f for f in schema_json["fields"] if f["name"] == "quake")["type"]["fields"]
    assert tuple(f["name"] for f in quake_fields) == QUAKE_FIELD_ORDER
    schema_types = {f["name"]: f["type"] for f in quake_fields}
    for avro_name, _, kind in QUAKE_PROPERTIES:
        assert schema_types[avro_name] == ["null", kind], avro_name
    derived = {"longitude", "latitude", "depth_km", "region"}
    mapped = {name for name, _, _ in QUAKE_PROPERTIES} | derived
    assert mapped == set(QUAKE_FIELD_ORDER)


def test_record_keys_follow_the_schema_order(schema_json: dict[str, Any]) -> None:
    record = feature_to_quake_change(_sample_feature(), **CONTEXT)
    assert list(record) == [f["name"] for f in schema_json["fields"]]
    assert tuple(record["quake"]) == QUAKE_FIELD_ORDER


@pytest.mark.parametrize("status", ["deleted", "DELETED"])
def test_deleted_status_is_a_delete(status: str, parsed_schema: Any) -> None:
    feature = _sample_feature()
    feature["properties"]["status"] = status
    record = feature_to_quake_change(feature, **CONTEXT)
    assert record["op"] == "DELETE"
    assert record["quake"]["status"] == status
    assert validate(record, parsed_schema, raise_errors=True)


def test_missing_optional_properties_become_null(parsed_schema: Any) -> None:
    feature = _sample_feature()
    for name in ("mag", "tz", "felt", "title"):
        del feature["properties"][name]
    feature["geometry"]["coordinates"] = feature["geometry"]["coordinates"][:2]
    record = feature_to_quake_change(feature, **CONTEXT)
    assert record["quake"]["mag"] is None
    assert record["quake"]["tz_offset_min"] is None
    assert record["quake"]["depth_km"] is None
    assert validate(record, parsed_schema, raise_errors=True)


@pytest.mark.parametrize(
    ("place", "region"),
    [
        ("8km NE of Aguanga, CA", "CA"),
        ("26 km S of Redoubt Volcano, Alaska", "Alaska"),
        ("5 km W of Cobb, California, USA", "USA"),
        ("South of the Fiji Islands", "the Fiji Islands"),
        ("Off the coast of Central America of somewhere", "somewhere"),
        ("Fiji region", "Fiji region"),
        ("Kermadec Islands, ", "Kermadec Islands, "),
        ("", None),
        (None, None),
    ],
)
def test_region_is_derived_from_place(place: str | None, region: str | None) -> None:
    assert derive_region(place) == region


def test_region_follows_the_place_of_the_feature(parsed_schema: Any) -> None:
    feature = _sample_feature()
    feature["properties"]["place"] = "South of the Fiji Islands"
    assert feature_to_quake_change(feature, **CONTEXT)["quake"]["region"] == "the Fiji Islands"
    del feature["properties"]["place"]
    record = feature_to_quake_change(feature, **CONTEXT)
    assert record["quake"]["region"] is None
    assert validate(record, parsed_schema, raise_errors=True)


def test_integral_float_for_an_int_field_is_accepted() -> None:
    feature = _sample_feature()
    feature["properties"]["nst"] = 32.0
    assert feature_to_quake_change(feature, **CONTEXT)["quake"]["nst"] == 32


def _breakers() -> list[tuple[str, Any, str]]:
    """(description, function mutating a feature, field named in the error)."""

    def drop_id(f: dict[str, Any]) -> None:
        del f["id"]

    def drop_updated(f: dict[str, Any]) -> None:
        del f["properties"]["updated"]

    def null_time(f: dict[str, Any]) -> None:
        f["properties"]["time"] = None

    def string_updated(f: dict[str, Any]) -> None:
        f["properties"]["updated"] = "1550360993593"

    def string_mag(f: dict[str, Any]) -> None:
        f["properties"]["mag"] = "4.5"

    def bool_tsunami(f: dict[str, Any]) -> None:
        f["properties"]["tsunami"] = True

    def fractional_nst(f: dict[str, Any]) -> None:
        f["properties"]["nst"] = 32.5

    def huge_tz(f: dict[str, Any]) -> None:
        f["properties"]["tz"] = 2**40

    def numeric_place(f: dict[str, Any]) -> None:
        f["properties"]["place"] = 12

    def no_geometry(f: dict[str, Any]) -> None:
        del f["geometry"]

    def short_coordinates(f: dict[str, Any]) -> None:
        f["geometry"]["coordinates"] = [1.0]

    def null_latitude(f: dict[str, Any]) -> None:
        f["geometry"]["coordinates"][1] = None

    def properties_list(f: dict[str, Any]) -> None:
        f["properties"] = []

    return [
        ("no id", drop_id, "id"),
        ("no updated", drop_updated, "properties.updated"),
        ("null time", null_time, "properties.time"),
        ("updated as text", string_updated, "properties.updated"),
        ("mag as text", string_mag, "properties.mag"),
        ("tsunami as bool", bool_tsunami, "properties.tsunami"),
        ("fractional nst", fractional_nst, "properties.nst"),
        ("tz beyond int", huge_tz, "properties.tz"),
        ("place as number", numeric_place, "properties.place"),
        ("no geometry", no_geometry, "geometry"),
        ("one coordinate", short_coordinates, "geometry.coordinates"),
        ("null latitude", null_latitude, "geometry.coordinates[1]"),
        ("properties not an object", properties_list, "properties"),
    ]


@pytest.mark.parametrize(
    ("case", "breaker", "field"), _breakers(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_bad_features_raise_record_error(case: str, breaker: Any, field: str) -> None:
    feature = _sample_feature()
    breaker(feature)
    with pytest.raises(RecordError) as raised:
        feature_to_quake_change(feature, **CONTEXT)
    assert raised.value.field == field, case
    assert raised.value.reason
    if field != "id":
        assert raised.value.record_id == "ci37532978"


def test_a_feature_that_is_not_an_object_raises_record_error() -> None:
    with pytest.raises(RecordError):
        feature_to_quake_change(["not", "a", "feature"], **CONTEXT)  # type: ignore[arg-type]
