"""The declarative HTTP source and the pure logic every source shares.

A source is described, not coded: its endpoint, static parameters, cursor
parameter and field, primary key, where the records are in a response, how it
pages, and the mapping of one record to the Avro value. The poller reads any
source through these functions; USGS is only the first configuration
(``producers.sources.usgs``). The HTTP call itself is injected (``FetchPage``)
so paging is tested without a network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from producers.cursor import Cursor, Version
from producers.errors import PageError, RecordError, SourceError

#: Parsed JSON body of one response.
JsonObject = Mapping[str, Any]
#: Performs one GET with these query parameters and returns the parsed body.
FetchPage = Callable[[Mapping[str, str]], JsonObject]


class RecordMapper(Protocol):
    """Maps one source record to the dict the value schema describes (pure)."""

    def __call__(
        self, record: Mapping[str, Any], /, *, source: str, poll_id: str, produced_at_ms: int
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class OffsetPaging:
    """limit/offset paging: ask ``page_size`` records at a time from ``first_offset`` on."""

    page_size: int
    limit_param: str = "limit"
    offset_param: str = "offset"
    first_offset: int = 1
    # A guard, not a tuning knob: a source that never returns a short page would
    # otherwise keep the poll paging forever.
    max_pages: int = 10_000


@dataclass(frozen=True)
class HttpSource:
    """Everything the poller needs to know about one HTTP source."""

    name: str
    url: str
    cursor_param: str
    cursor_field: str
    primary_key: str
    records_path: str
    paging: OffsetPaging
    format_cursor: Callable[[int], str]
    map_record: RecordMapper
    value_schema: str
    static_params: Mapping[str, str] = field(default_factory=dict)
    snapshot_time_path: str | None = None
    cursor_resolution_ms: int = 1
    cursor_lookback_ms: int = 0
    #: The keys each object of a record has, by dotted path ("" = the record itself).
    #: A key outside these, or one missing, is schema drift: the record is
    #: dead-lettered instead of being mapped with the difference silently dropped.
    known_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class FetchResult:
    """Records of the pages of one poll, with the source's time of the first page.

    ``page_error`` is set when a page arrived unreadable: ``records`` then
    holds the pages before it, and the poll is partial.
    """

    records: list[JsonObject]
    pages: int
    snapshot_ms: int | None
    page_error: PageError | None = None


def get_path(document: Any, path: str) -> Any:
    """Value at a dotted path (``properties.updated``), None when any step is missing."""
    value = document
    for step in path.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


def page_params(source: HttpSource, cursor: Cursor, page_index: int) -> dict[str, str]:
    """Query parameters of page ``page_index`` (0-based) of a poll that starts at ``cursor``."""
    params = dict(source.static_params)
    start_ms = cursor.request_from_ms(
        resolution_ms=source.cursor_resolution_ms, lookback_ms=source.cursor_lookback_ms
    )
    if start_ms is not None:
        params[source.cursor_param] = source.format_cursor(start_ms)
    paging = source.paging
    params[paging.limit_param] = str(paging.page_size)
    params[paging.offset_param] = str(paging.first_offset + page_index * paging.page_size)
    return params


def extract_records(source: HttpSource, body: JsonObject) -> list[JsonObject]:
    """The records of one response; a body without a record list is a source error."""
    records = get_path(body, source.records_path)
    if not isinstance(records, list):
        raise SourceError(f"response has no list at {source.records_path!r}", url=source.url)
    return records


def record_version(source: HttpSource, record: Any) -> Version:
    """(primary key, cursor value) of one record, or ``RecordError`` when unreadable."""
    key = get_path(record, source.primary_key)
    if not isinstance(key, str) or not key:
        raise RecordError("primary key is missing or not a string", field=source.primary_key)
    updated = get_path(record, source.cursor_field)
    if isinstance(updated, bool) or not isinstance(updated, int):
        raise RecordError(
            "cursor field is missing or not an integer", record_id=key, field=source.cursor_field
        )
    return key, updated


def fetch_all(source: HttpSource, cursor: Cursor, fetch_page: FetchPage) -> FetchResult:
    """Read every page changed since ``cursor``; a short page is the last one.

    The source's own time of the first page (``snapshot_time_path``) is kept
    as the high-water mark the cursor may advance to. A page that arrives
    unreadable (``PageError``) ends the poll early with what was read before it.
    """
    records: list[JsonObject] = []
    snapshot_ms: int | None = None
    for page_index in range(source.paging.max_pages):
        try:
            body = fetch_page(page_params(source, cursor, page_index))
        except PageError as error:
            return FetchResult(
                records=records, pages=page_index, snapshot_ms=snapshot_ms, page_error=error
            )
        if page_index == 0 and source.snapshot_time_path is not None:
            snapshot = get_path(body, source.snapshot_time_path)
            is_ms = isinstance(snapshot, int) and not isinstance(snapshot, bool)
            snapshot_ms = snapshot if is_ms else None
        page = extract_records(source, body)
        records.extend(page)
        if len(page) < source.paging.page_size:
            return FetchResult(records=records, pages=page_index + 1, snapshot_ms=snapshot_ms)
    raise SourceError(f"paging did not end after {source.paging.max_pages} pages", url=source.url)


def field_drift(source: HttpSource, record: Any) -> str | None:
    """Why ``record``'s shape differs from ``source.known_fields``, or None when it does not.

    Names the first unexpected or missing key by its dotted path. A value of
    the wrong type is left to the mapping, which knows the types.
    """
    for path, expected in source.known_fields.items():
        value = record if path == "" else get_path(record, path)
        if not isinstance(value, Mapping):
            continue  # a missing or non-object parent is the mapping's to report
        prefix = f"{path}." if path else ""
        extra = sorted(set(value) - expected)
        if extra:
            return f"unexpected field {prefix}{extra[0]} (schema drift)"
        missing = sorted(expected - set(value))
        if missing:
            return f"field {prefix}{missing[0]} is missing (schema drift)"
    return None
