"""The FDSN event query contract: parameter parsing and event selection (pure).

Behaviour and error wording follow USGS's published service code
(usgs/earthquake-event-ws, FDSNEventWebService / WebService / FDSNIndex), as
summarised in ``tests/data/usgs/README.md``:

- parameters are read in query-string order and the first bad one is reported;
  an empty value is ignored, a repeated name keeps its last value;
- times are ISO 8601, UTC unless a zone is given, read to whole seconds
  (fractions are dropped, as PHP ``strtotime`` does); bounds are inclusive;
- without ``starttime`` only events of the last 30 days (service setting) match;
- ``limit`` is 0..service limit, ``offset`` is 1-based; a result of more than
  the service limit is refused;
- deleted events are hidden unless ``includedeleted`` is true (or ``only``).

The simulator serves ``format=geojson`` only; USGS parameters it does not
implement are answered 501, like USGS answers ``includearrivals``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from producers.simulator.store import EventVersion

DEFAULT_SERVICE_LIMIT = 20_000
DEFAULT_MAX_EVENT_AGE_MS = 30 * 24 * 3600 * 1000
ORDERS = ("time", "time-asc", "magnitude", "magnitude-asc")
FORMATS = ("geojson",)

BAD_REQUEST = 400
NOT_IMPLEMENTED = 501

_ALIASES = {"start": "starttime", "end": "endtime", "minmag": "minmagnitude"}
#: Parameters USGS knows that the simulator does not implement.
_UNSUPPORTED = frozenset(
    {
        "minlatitude",
        "minlat",
        "maxlatitude",
        "maxlat",
        "minlongitude",
        "minlon",
        "maxlongitude",
        "maxlon",
        "latitude",
        "lat",
        "longitude",
        "lon",
        "minradius",
        "maxradius",
        "minradiuskm",
        "maxradiuskm",
        "mindepth",
        "maxdepth",
        "maxmagnitude",
        "maxmag",
        "magnitudetype",
        "magtype",
        "includeallorigins",
        "includeallmagnitudes",
        "includearrivals",
        "includesuperseded",
        "eventid",
        "catalog",
        "contributor",
        "callback",
        "eventtype",
        "reviewstatus",
        "minmmi",
        "maxmmi",
        "mincdi",
        "maxcdi",
        "minfelt",
        "alertlevel",
        "mingap",
        "maxgap",
        "minsig",
        "maxsig",
        "producttype",
        "productcode",
        "kmlcolorby",
        "kmlanimated",
        "nodata",
        "jsonerror",
    }
)

_ISO_8601 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.\d+)?)?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?)?"
)
# PHP is_numeric: optional sign, digits with optional fraction (or a bare
# fraction), optional exponent, surrounding whitespace allowed.
_NUMERIC = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")


class FdsnError(Exception):
    """A request the service refuses: HTTP status and the message line of the error body."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


@dataclass(frozen=True)
class EventQuery:
    """A parsed and validated event query (times in epoch ms, whole seconds)."""

    format: str | None = None
    starttime_ms: int | None = None
    endtime_ms: int | None = None
    updatedafter_ms: int | None = None
    minmagnitude: float | None = None
    limit: int | None = None
    offset: int = 1
    orderby: str = "time"
    include_deleted: bool = False
    only_deleted: bool = False


def parse_fdsn_time(value: str) -> int | None:
    """Epoch ms (whole seconds) of an ISO 8601 date or date-time, None when unreadable."""
    match = _ISO_8601.fullmatch(value)
    if match is None:
        return None
    zone_text = match["zone"]
    if zone_text is None or zone_text == "Z":
        zone = UTC
    else:
        digits = zone_text[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        zone = timezone(-offset if zone_text[0] == "-" else offset)
    try:
        instant = datetime.fromisoformat(match["date"]).replace(
            hour=int(match["hour"] or 0),
            minute=int(match["minute"] or 0),
            second=int(match["second"] or 0),
            tzinfo=zone,
        )
    except ValueError:
        return None
    return int(instant.timestamp()) * 1000


def _bad_value(name: str, value: str, valid: str) -> FdsnError:
    # `valid` carries its own punctuation: the service ends some of these
    # messages with a period and others (integer and float ranges) without.
    return FdsnError(BAD_REQUEST, f'Bad {name} value "{value}". Valid values are{valid}')


def _time(name: str, value: str) -> int:
    parsed = parse_fdsn_time(value)
    if parsed is None:
        raise _bad_value(name, value, " ISO-8601 timestamps.")
    return parsed


def _integer(name: str, value: str, low: int | None, high: int | None) -> int:
    number = int(value) if value.isascii() and value.isdigit() else None
    if number is None or (low is not None and number < low) or (high is not None and number > high):
        if low is None and high is None:
            valid = " integers"
        else:
            valid = (f" {low} <= " if low is not None else " ") + name
            valid += f" <= {high}" if high is not None else ""
        raise _bad_value(name, value, valid)
    return number


def _float(name: str, value: str) -> float:
    if _NUMERIC.fullmatch(value) is None:
        raise _bad_value(name, value, " numeric")
    return float(value)


def _enumerated(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise _bad_value(name, value, ": " + ", ".join(f'"{a}"' for a in allowed) + ".")
    return value


def _boolean(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise _bad_value(name, value, ' (case insensitive): "TRUE", "FALSE".')
    return lowered == "true"


def parse_query(
    pairs: Iterable[tuple[str, str]], *, service_limit: int = DEFAULT_SERVICE_LIMIT
) -> EventQuery:
    """Validate query-string pairs into an ``EventQuery``, or raise ``FdsnError``."""
    params: dict[str, str] = {}
    for name, value in pairs:
        # PHP's $_GET: a repeated name keeps its first position and its last value.
        params[name] = value
    fields: dict[str, Any] = {}
    for raw_name, value in params.items():
        if value == "":
            continue
        name = _ALIASES.get(raw_name, raw_name)
        if name in ("starttime", "endtime", "updatedafter"):
            fields[f"{name}_ms"] = _time(raw_name, value)
        elif name == "minmagnitude":
            fields[name] = _float(raw_name, value)
        elif name == "limit":
            fields[name] = _integer(name, value, 0, service_limit)
        elif name == "offset":
            fields[name] = _integer(name, value, 1, None)
        elif name == "orderby":
            fields[name] = _enumerated(name, value, ORDERS)
        elif name == "format":
            fields[name] = _enumerated(name, value, FORMATS)
        elif name == "includedeleted":
            only = value == "only"
            fields["include_deleted"] = only or _boolean(name, value)
            fields["only_deleted"] = only
        elif name in _UNSUPPORTED:
            raise FdsnError(
                NOT_IMPLEMENTED, f"{raw_name} parameter is not supported by the simulator"
            )
        else:
            raise FdsnError(BAD_REQUEST, f'Unknown parameter "{raw_name}".')
    query = EventQuery(**fields)
    if query.format is None:
        # The service's default format is QuakeML, which the simulator does not serve.
        raise _bad_value("format", "quakeml", ': "geojson". (quakeml is the default)')
    return query


def _order_key(version: EventVersion, by_magnitude: bool) -> tuple[object, ...]:
    # Ties are broken by time and id so offset paging is deterministic. A missing
    # magnitude sorts first in ascending order, as NULL does in the service's SQL.
    if by_magnitude:
        mag = version.magnitude
        return (mag is not None, mag or 0.0, version.time_ms, version.event_id)
    return (version.time_ms, version.event_id)


def select_events(
    versions: Iterable[EventVersion], query: EventQuery, *, now_ms: int, max_event_age_ms: int
) -> list[EventVersion]:
    """The events a query matches, ordered, before ``limit``/``offset`` are applied."""
    starttime_ms = query.starttime_ms
    if starttime_ms is None:
        # The service's default window, relative to its (whole-second) clock.
        starttime_ms = now_ms - now_ms % 1000 - max_event_age_ms
    selected = [
        v
        for v in versions
        if (v.deleted if query.only_deleted else (query.include_deleted or not v.deleted))
        and v.time_ms >= starttime_ms
        and (query.endtime_ms is None or v.time_ms <= query.endtime_ms)
        and (query.updatedafter_ms is None or v.updated_ms >= query.updatedafter_ms)
        and (
            query.minmagnitude is None
            or (v.magnitude is not None and v.magnitude >= query.minmagnitude)
        )
    ]
    by_magnitude = query.orderby.startswith("magnitude")
    descending = not query.orderby.endswith("-asc")
    selected.sort(key=lambda v: _order_key(v, by_magnitude), reverse=descending)
    return selected


def page(
    selected: Sequence[EventVersion],
    query: EventQuery,
    *,
    service_limit: int,
    counts_before_paging: bool = False,
) -> list[EventVersion]:
    """Apply ``limit``/``offset``; refuse a result larger than the service (search) limit.

    As in the service's code, the limit check counts what would be returned, so
    a request with ``limit`` <= the service limit is never refused.
    ``counts_before_paging`` counts every matching event instead (before
    ``limit``/``offset``), the stricter reading the live service is not
    confirmed to avoid: it lets tests drive a client's query splitting.
    """
    start = query.offset - 1
    end = len(selected) if query.limit is None else start + query.limit
    result = list(selected[start:end])
    counted = len(selected) if counts_before_paging else len(result)
    if counted > service_limit:
        raise FdsnError(
            BAD_REQUEST,
            f"{counted} matching events exceeds search limit of {service_limit}. "
            "Modify the search to match fewer events.",
        )
    return result
