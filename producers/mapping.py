"""USGS GeoJSON feature -> ``QuakeChange`` record (``schemas/quake_change.avsc``).

Pure: no I/O, no clock. The poller supplies ``source``, ``poll_id`` and
``produced_at_ms``. The rename table below is checked against the ``.avsc`` by
the unit tests, so the schema stays the only definition of the event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from producers.errors import RecordError
from producers.json_guard import NonFiniteNumber

AvroKind = Literal["double", "int", "long", "string"]

# Avro int and long ranges: fastavro refuses values outside them at write time,
# which would fail the whole batch instead of dead-lettering one record.
_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)

#: (Avro field of Quake, USGS property, Avro type); every one is nullable.
QUAKE_PROPERTIES: tuple[tuple[str, str, AvroKind], ...] = (
    ("mag", "mag", "double"),
    ("mag_type", "magType", "string"),
    ("place", "place", "string"),
    ("tz_offset_min", "tz", "int"),
    ("url", "url", "string"),
    ("detail_url", "detail", "string"),
    ("felt", "felt", "int"),
    ("cdi", "cdi", "double"),
    ("mmi", "mmi", "double"),
    ("alert", "alert", "string"),
    ("status", "status", "string"),
    ("tsunami", "tsunami", "int"),
    ("sig", "sig", "int"),
    ("net", "net", "string"),
    ("code", "code", "string"),
    ("ids", "ids", "string"),
    ("sources", "sources", "string"),
    ("types", "types", "string"),
    ("nst", "nst", "int"),
    ("dmin_deg", "dmin", "double"),
    ("rms_s", "rms", "double"),
    ("gap_deg", "gap", "double"),
    ("event_type", "type", "string"),
    ("title", "title", "string"),
)

#: Order of the Quake record's fields in the schema (geometry fields included).
QUAKE_FIELD_ORDER: tuple[str, ...] = (
    "mag",
    "mag_type",
    "place",
    "longitude",
    "latitude",
    "depth_km",
    "tz_offset_min",
    "url",
    "detail_url",
    "felt",
    "cdi",
    "mmi",
    "alert",
    "status",
    "tsunami",
    "sig",
    "net",
    "code",
    "ids",
    "sources",
    "types",
    "nst",
    "dmin_deg",
    "rms_s",
    "gap_deg",
    "event_type",
    "title",
    "region",
)

#: USGS marks a removed event with this review status (compared case-insensitively:
#: a 2016 capture has upper-case statuses such as "REVIEWED").
DELETED_STATUS = "deleted"


def _cast(value: Any, kind: AvroKind, *, record_id: str | None, field: str) -> Any:
    """Cast one JSON value to the Python type fastavro writes as ``kind``, or raise."""
    if kind == "string":
        if isinstance(value, str):
            return value
        raise RecordError(
            f"expected a string, got {type(value).__name__}", record_id=record_id, field=field
        )
    if isinstance(value, NonFiniteNumber):
        raise RecordError(
            f"{value.text} is not a number JSON allows", record_id=record_id, field=field
        )
    # bool is an int subclass in Python, but `true` is never a number in the source.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(
            f"expected a number, got {type(value).__name__}", record_id=record_id, field=field
        )
    if kind == "double":
        if not math.isfinite(value):  # 1e999 parses as infinity
            raise RecordError(f"{value!r} is not a finite number", record_id=record_id, field=field)
        return float(value)
    # int / long: the source writes some integers as floats (e.g. 32.0); accept only
    # whole numbers so a fractional value is reported, not silently truncated.
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise RecordError(
                f"expected a whole number, got {value!r}", record_id=record_id, field=field
            )
        value = int(value)
    low, high = _INT_RANGE if kind == "int" else _LONG_RANGE
    if not low <= value <= high:
        raise RecordError(
            f"{value} is out of range of Avro {kind}", record_id=record_id, field=field
        )
    return value


def derive_region(place: str | None) -> str | None:
    """The broad region of an event from its ``place`` text (schema v2 field ``region``).

    USGS writes places as ``"8km NE of Aguanga, CA"``, ``"South of the Fiji
    Islands"`` or ``"Fiji region"``: the region is the text after the last
    ``", "``, else after the last ``" of "``, else the whole place. A place that
    ends in a separator keeps the whole place rather than an empty region; an
    empty place has no region.
    """
    if place is None:
        return None
    for separator in (", ", " of "):
        _, found, tail = place.rpartition(separator)
        if found and tail.strip():
            return tail.strip()
    return place or None


def _optional(
    properties: Mapping[str, Any], name: str, kind: AvroKind, *, record_id: str, field: str
) -> Any:
    value = properties.get(name)
    return None if value is None else _cast(value, kind, record_id=record_id, field=field)


def _required(value: Any, kind: AvroKind, *, record_id: str, field: str) -> Any:
    if value is None:
        raise RecordError("required field is missing or null", record_id=record_id, field=field)
    return _cast(value, kind, record_id=record_id, field=field)


def _mapping(value: Any, *, record_id: str | None, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RecordError(
            f"expected an object, got {type(value).__name__}", record_id=record_id, field=field
        )
    return value


def feature_to_quake_change(
    feature: Mapping[str, Any], *, source: str, poll_id: str, produced_at_ms: int
) -> dict[str, Any]:
    """Map one USGS GeoJSON feature to a dict matching ``schemas/quake_change.avsc``.

    ``op`` is ``DELETE`` when ``properties.status`` is ``deleted`` and ``UPSERT``
    otherwise; ``updated_ms`` is ``properties.updated`` (the version) and
    ``event_time_ms`` is ``properties.time``. Properties are renamed to the
    schema's snake_case names with units (``dmin`` -> ``dmin_deg``, ...), the
    GeoJSON point becomes ``longitude``, ``latitude``, ``depth_km``, and numbers
    are cast to the schema's types (an integer-looking ``mag`` 2 becomes 2.0).
    Missing optional properties become null. Raises ``RecordError`` when a
    required field (id, updated, time, coordinates) is missing or any field has
    the wrong JSON type, so the caller can dead-letter that one record.
    """
    feature = _mapping(feature, record_id=None, field="feature")
    raw_id = feature.get("id")
    if not isinstance(raw_id, str) or not raw_id:
        raise RecordError("feature id is missing or not a non-empty string", field="id")
    record_id = raw_id

    properties = _mapping(feature.get("properties"), record_id=record_id, field="properties")
    geometry = _mapping(feature.get("geometry"), record_id=record_id, field="geometry")
    coordinates = geometry.get("coordinates")
    if not isinstance(coordinates, list | tuple) or not 2 <= len(coordinates) <= 3:
        raise RecordError(
            "geometry.coordinates must be [longitude, latitude(, depth)]",
            record_id=record_id,
            field="geometry.coordinates",
        )

    quake: dict[str, Any] = {
        avro_name: _optional(
            properties, usgs_name, kind, record_id=record_id, field=f"properties.{usgs_name}"
        )
        for avro_name, usgs_name, kind in QUAKE_PROPERTIES
    }
    quake["longitude"] = _required(
        coordinates[0], "double", record_id=record_id, field="geometry.coordinates[0]"
    )
    quake["latitude"] = _required(
        coordinates[1], "double", record_id=record_id, field="geometry.coordinates[1]"
    )
    depth = coordinates[2] if len(coordinates) == 3 else None
    quake["depth_km"] = (
        None
        if depth is None
        else _cast(depth, "double", record_id=record_id, field="geometry.coordinates[2]")
    )

    quake["region"] = derive_region(quake["place"])

    status = quake["status"]
    op = "DELETE" if status is not None and status.lower() == DELETED_STATUS else "UPSERT"
    return {
        "entity_id": record_id,
        "op": op,
        "updated_ms": _required(
            properties.get("updated"), "long", record_id=record_id, field="properties.updated"
        ),
        "event_time_ms": _required(
            properties.get("time"), "long", record_id=record_id, field="properties.time"
        ),
        "source": source,
        "poll_id": poll_id,
        "produced_at_ms": produced_at_ms,
        "quake": {name: quake[name] for name in QUAKE_FIELD_ORDER},
    }
