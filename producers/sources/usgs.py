"""USGS earthquakes as a declarative HTTP source (FDSN event web service).

Contract: ``tests/data/usgs/README.md``. The choices below are about that
contract, not about the poller:

- ``updatedafter`` is inclusive and parsed by the service to whole seconds
  (PHP ``strtotime``), so the cursor resolution is 1000 ms and the cursor
  re-reads the last second (see ``producers.cursor``).
- ``includedeleted=true``: without it the service hides deleted events, so a
  deletion would never reach the stream; with it they come back with
  ``status: "deleted"`` and become DELETE change events.
- ``orderby=time-asc`` sorts by *event* time, not by ``updated``; the poller
  sorts versions itself. Ascending order keeps offsets stable while new events
  arrive during paging (they append at the end instead of shifting pages).
- ``limit`` <= 20000 keeps each request under the service's search limit
  (per its code the limit counts what one request returns). Should the
  service refuse a query anyway (400 ``<N> matching events exceeds search
  limit of 20000``), the poll is read again in slices of event time
  (``starttime``/``endtime``, inclusive, whole seconds): the service has no
  upper bound on ``updatedafter``, so event time is the only range to split.
  The slices cover the service's default window (30 days before its time,
  which every error body states under ``Request Submitted:``), the newest
  slice without ``endtime``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from core.settings import SourceSettings
from producers.mapping import feature_to_quake_change
from producers.sources.base import HttpSource, OffsetPaging, QuerySplit

#: Largest page the service serves (and the largest result of one request).
SERVICE_LIMIT = 20_000
#: The service reads time parameters to whole seconds.
CURSOR_RESOLUTION_MS = 1000
#: The refusal of a query over the search limit (tests/data/usgs/fdsn_error_400_exceeds_limit.txt).
EXCEEDS_LIMIT_STATUS = 400
EXCEEDS_LIMIT_PATTERN = r"\d+ matching events exceeds search limit of \d+"
#: The service's time in its error bodies: ``Request Submitted:`` then ISO 8601 on the next line.
SUBMITTED_PATTERN = r"Request Submitted:\s*(?P<time>\S+)"
#: Without ``starttime`` the service matches events of the last 30 days only.
DEFAULT_EVENT_WINDOW_MS = 30 * 24 * 3600 * 1000
#: Avro schema of the change events, a file under ``schemas/``.
VALUE_SCHEMA = "quake_change.avsc"
STATIC_PARAMS = {"format": "geojson", "orderby": "time-asc", "includedeleted": "true"}
#: Keys of a GeoJSON feature of the summary format (tests/data/usgs/README.md):
#: the service always writes every property, null when unknown, so a key that
#: appears or disappears is a change of contract, not a missing value.
FEATURE_FIELDS = frozenset({"type", "properties", "geometry", "id"})
PROPERTY_FIELDS = frozenset(
    {
        "mag", "place", "time", "updated", "tz", "url", "detail", "felt", "cdi", "mmi", "alert",
        "status", "tsunami", "sig", "net", "code", "ids", "sources", "types", "nst", "dmin",
        "rms", "gap", "magType", "type", "title",
    }
)  # fmt: skip
GEOMETRY_FIELDS = frozenset({"type", "coordinates"})


def format_updatedafter(epoch_ms: int) -> str:
    """ISO 8601 UTC date-time without zone designator, floored to whole seconds.

    The format of every FDSN time parameter (``starttime`` and ``endtime`` too).
    """
    instant = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S")


#: Reading a refused poll in slices of event time (see the module docstring).
EVENT_TIME_SPLIT = QuerySplit(
    refused_status=EXCEEDS_LIMIT_STATUS,
    refused_pattern=EXCEEDS_LIMIT_PATTERN,
    start_param="starttime",
    end_param="endtime",
    format_time=format_updatedafter,
    window_ms=DEFAULT_EVENT_WINDOW_MS,
    source_time_pattern=SUBMITTED_PATTERN,
    resolution_ms=CURSOR_RESOLUTION_MS,
    min_slice_ms=CURSOR_RESOLUTION_MS,
)


def usgs_earthquakes(settings: SourceSettings) -> HttpSource:
    """The USGS FDSN event query (or the simulator speaking it) as an ``HttpSource``."""
    return HttpSource(
        name=settings.name,
        url=settings.base_url,
        static_params=STATIC_PARAMS,
        cursor_param="updatedafter",
        cursor_field="properties.updated",
        primary_key="id",
        records_path="features",
        snapshot_time_path="metadata.generated",
        paging=OffsetPaging(page_size=min(settings.page_size, SERVICE_LIMIT)),
        format_cursor=format_updatedafter,
        cursor_resolution_ms=CURSOR_RESOLUTION_MS,
        cursor_lookback_ms=round(settings.lookback_s * 1000),
        known_fields={
            "": FEATURE_FIELDS,
            "properties": PROPERTY_FIELDS,
            "geometry": GEOMETRY_FIELDS,
        },
        map_record=feature_to_quake_change,
        value_schema=VALUE_SCHEMA,
        query_split=EVENT_TIME_SPLIT,
    )
