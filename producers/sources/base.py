"""The declarative HTTP source and the pure logic every source shares.

A source is described, not coded: its endpoint, static parameters, cursor
parameter and field, primary key, where the records are in a response, how it
pages, and the mapping of one record to the Avro value. The poller reads any
source through these functions; USGS is only the first configuration
(``producers.sources.usgs``). The HTTP call itself is injected (``FetchPage``)
so paging is tested without a network.

A source that refuses a query matching too many records (USGS: more than
20,000) declares how the refusal looks and how a query is narrowed
(``QuerySplit``); ``fetch_changes`` then reads the poll in time slices,
bisecting a slice the source still refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
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
class QuerySplit:
    """How a source refuses a query that matches too many records, and how to narrow it.

    The refusal is an HTTP ``refused_status`` whose body matches
    ``refused_pattern`` (a regex, searched). The query is then narrowed by
    slices of a time range, bounded by two inclusive parameters
    (``start_param``, ``end_param``, written by ``format_time``); the cursor
    parameter stays as it is. The unbounded query covered ``window_ms`` before
    the source's own time, which is read from the refusal body
    (``source_time_pattern``, group ``time``, ISO 8601; the poller's clock when
    absent or unreadable). The newest slice has no upper bound, so nothing
    newer than that time is lost. A slice still refused is bisected, down to
    ``min_slice_ms``; bounds are multiples of ``resolution_ms``.
    """

    refused_status: int
    refused_pattern: str
    start_param: str
    end_param: str
    format_time: Callable[[int], str]
    window_ms: int
    source_time_pattern: str | None = None
    resolution_ms: int = 1000
    min_slice_ms: int = 1000
    # A guard like ``OffsetPaging.max_pages``: a source refusing every slice
    # would otherwise be bisected into millions of requests.
    max_slices: int = 10_000

    def refusal(self, error: SourceError) -> str | None:
        """The matched refusal text when ``error`` is this source refusing a too-large query."""
        if error.status_code != self.refused_status or error.body is None:
            return None
        match = re.search(self.refused_pattern, error.body)
        return match.group(0) if match is not None else None

    def source_time_ms(self, error: SourceError) -> int | None:
        """The source's time stated in the refusal body, None when absent or unreadable."""
        if self.source_time_pattern is None or error.body is None:
            return None
        match = re.search(self.source_time_pattern, error.body)
        if match is None:
            return None
        try:
            instant = datetime.fromisoformat(match.group("time"))
        except (IndexError, ValueError):
            return None
        if instant.tzinfo is None:
            return None  # an instant without a zone is ambiguous: use the poller's clock
        return int(instant.timestamp() * 1000)


@dataclass(frozen=True)
class TimeSlice:
    """Records whose time is in ``[start_ms, end_ms]`` (inclusive); ``open_end``: no upper bound.

    Bounds are multiples of the source's resolution. Halves share their
    boundary: a source that reads bounds to whole seconds cannot exclude the
    fraction of a second after ``end``, so ``[a, m]`` + ``[m + 1 s, b]`` would
    lose a record at ``m + 0.4 s``; ``[a, m]`` + ``[m, b]`` reads one at
    exactly ``m`` twice instead (the same version, dropped once merged).
    """

    start_ms: int
    end_ms: int
    open_end: bool = False

    def params(self, split: QuerySplit) -> dict[str, str]:
        """The bound parameters of this slice (no end parameter for an open slice)."""
        params = {split.start_param: split.format_time(self.start_ms)}
        if not self.open_end:
            params[split.end_param] = split.format_time(self.end_ms)
        return params

    def halves(self, split: QuerySplit) -> tuple[TimeSlice, TimeSlice] | None:
        """The two halves of this slice, None when it is at the minimum width already."""
        step = split.resolution_ms
        width = self.end_ms - self.start_ms
        if width <= max(split.min_slice_ms, step):
            return None
        middle = self.start_ms + width // step // 2 * step
        return (
            TimeSlice(self.start_ms, middle),
            TimeSlice(middle, self.end_ms, self.open_end),
        )

    def describe(self, split: QuerySplit) -> str:
        """The slice as query parameters, for messages."""
        return "&".join(f"{name}={value}" for name, value in self.params(split).items())


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
    #: How to narrow a query the source refuses as too large (None: it never does).
    query_split: QuerySplit | None = None


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
    #: Refused queries that were split in two (0 when the whole poll was one query).
    splits: int = 0
    #: Time slices read (0 when the poll was not split).
    slices: int = 0


def get_path(document: Any, path: str) -> Any:
    """Value at a dotted path (``properties.updated``), None when any step is missing."""
    value = document
    for step in path.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


def page_params(
    source: HttpSource,
    cursor: Cursor,
    page_index: int,
    bounds: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Query parameters of page ``page_index`` (0-based) of a poll that starts at ``cursor``.

    ``bounds`` are the parameters of a time slice (``QuerySplit``), if any.
    """
    params = dict(source.static_params)
    params.update(bounds or {})
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


def fetch_all(
    source: HttpSource,
    cursor: Cursor,
    fetch_page: FetchPage,
    bounds: Mapping[str, str] | None = None,
) -> FetchResult:
    """Read every page changed since ``cursor``; a short page is the last one.

    The source's own time of the first page (``snapshot_time_path``) is kept
    as the high-water mark the cursor may advance to. A page that arrives
    unreadable (``PageError``) ends the poll early with what was read before it.
    ``bounds`` narrow every page to one time slice.
    """
    records: list[JsonObject] = []
    snapshot_ms: int | None = None
    for page_index in range(source.paging.max_pages):
        try:
            body = fetch_page(page_params(source, cursor, page_index, bounds))
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


def fetch_changes(
    source: HttpSource, cursor: Cursor, fetch_page: FetchPage, *, now_ms: int
) -> FetchResult:
    """Read everything changed since ``cursor``, in time slices when the source refuses it whole.

    First the whole query (``fetch_all``). When the source refuses it as too
    large (``source.query_split`` recognises the error), the same query is read
    again as time slices covering the source's window, newest slice open-ended;
    a refused slice is bisected (counted in ``splits``) until the source
    accepts it. A refusal on a later page of a slice discards that slice's
    pages and splits it too. The slices' records are merged by version (key,
    cursor value): a record exactly on the boundary two halves share is read
    twice and kept once (one that moved between slices while the poll ran
    comes back as another version, for ``select_new_versions`` to order). The
    high-water mark is the earliest first-page time of all slices, so the
    cursor does not pass a change a slice read earlier could not see.

    Raises ``SourceError`` when a refused slice is at the minimum width
    (``min_slice_ms``) and cannot be narrowed further, or when more than
    ``max_slices`` slices would be needed. ``now_ms`` (the poller's clock)
    places the window when the refusal does not state the source's time.
    """
    split = source.query_split
    try:
        return fetch_all(source, cursor, fetch_page)
    except SourceError as error:
        if split is None or split.refusal(error) is None:
            raise
        source_now_ms = split.source_time_ms(error)
        refused = error
    step = split.resolution_ms
    top_ms = (now_ms if source_now_ms is None else source_now_ms) // step * step
    # The whole query is the window's slice, open-ended: it was just refused, so
    # its halves come first.
    pending = list(
        _split_refused(source, split, TimeSlice(top_ms - split.window_ms, top_ms, True), refused)
    )
    records: list[JsonObject] = []
    versions: set[Version] = set()
    snapshots: list[int] = []
    pages, splits, slices = 0, 1, 0
    while pending:
        piece = pending.pop()
        try:
            result = fetch_all(source, cursor, fetch_page, piece.params(split))
        except SourceError as error:
            if split.refusal(error) is None:
                raise
            splits += 1
            if slices + len(pending) + 2 > split.max_slices:
                raise SourceError(
                    f"{source.name}: the refused query needs more than "
                    f"{split.max_slices} time slices",
                    status_code=error.status_code,
                    url=error.url,
                    body=error.body,
                ) from error
            pending.extend(_split_refused(source, split, piece, error))
            continue
        slices += 1
        for record in result.records:
            # Halves share a boundary second: a record exactly on it comes twice.
            try:
                version = record_version(source, record)
            except RecordError:
                records.append(record)  # no version to merge by: the poller dead-letters it
                continue
            if version not in versions:
                versions.add(version)
                records.append(record)
        pages += result.pages
        if result.snapshot_ms is not None:
            snapshots.append(result.snapshot_ms)
        if result.page_error is not None:
            # A partial poll: the cursor only remembers what was read.
            return FetchResult(
                records, pages, min(snapshots, default=None), result.page_error, splits, slices
            )
    return FetchResult(records, pages, min(snapshots, default=None), None, splits, slices)


def _split_refused(
    source: HttpSource, split: QuerySplit, piece: TimeSlice, error: SourceError
) -> tuple[TimeSlice, TimeSlice]:
    """The halves of a refused slice, newer half first (a stack pops the older one first)."""
    halves = piece.halves(split)
    if halves is None:
        raise SourceError(
            f"{source.name}: the source refuses the slice {piece.describe(split)} "
            f"({split.refusal(error)}) and it cannot be narrowed further (minimum slice "
            f"{split.min_slice_ms / 1000:g} s)",
            status_code=error.status_code,
            url=error.url,
            body=error.body,
        ) from error
    older, newer = halves
    return newer, older


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
