"""Declarative source: paging parameters, record extraction, versions, selection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from core.settings import SourceSettings
from producers.cursor import Cursor
from producers.errors import RecordError, SourceError
from producers.poller import select_new_versions
from producers.sources.base import (
    OffsetPaging,
    extract_records,
    fetch_all,
    get_path,
    page_params,
    record_version,
)
from producers.sources.usgs import STATIC_PARAMS, format_updatedafter, usgs_earthquakes

# 2019-02-16T23:49:53.593Z
UPDATED_MS = 1550360993593


@pytest.fixture
def source() -> Any:
    # No overlap window here: these tests are about whole-second flooring and paging.
    return usgs_earthquakes(
        SourceSettings(base_url="http://127.0.0.1:1/q", page_size=3, lookback_s=0)
    )


def feature(entity_id: str, updated_ms: int) -> dict[str, Any]:
    return {"type": "Feature", "id": entity_id, "properties": {"updated": updated_ms}}


def test_usgs_source_description() -> None:
    source = usgs_earthquakes(SourceSettings(name="quakes", page_size=500))
    assert source.name == "quakes"
    assert source.cursor_param == "updatedafter"
    assert source.cursor_field == "properties.updated"
    assert source.primary_key == "id"
    assert source.records_path == "features"
    assert source.paging == OffsetPaging(page_size=500, limit_param="limit", offset_param="offset")
    assert source.cursor_resolution_ms == 1000
    assert source.value_schema == "quake_change.avsc"


def test_format_updatedafter_is_utc_whole_seconds() -> None:
    assert format_updatedafter(UPDATED_MS) == "2019-02-16T23:49:53"
    assert format_updatedafter(0) == "1970-01-01T00:00:00"


def test_first_page_of_a_first_poll(source: Any) -> None:
    params = page_params(source, Cursor(), 0)
    assert params == {**STATIC_PARAMS, "limit": "3", "offset": "1"}
    assert params["includedeleted"] == "true"


def test_later_pages_move_the_one_based_offset(source: Any) -> None:
    assert page_params(source, Cursor(), 1)["offset"] == "4"
    assert page_params(source, Cursor(), 4)["offset"] == "13"


def test_cursor_becomes_an_inclusive_whole_second_parameter(source: Any) -> None:
    cursor = Cursor(updated_ms=UPDATED_MS)
    assert page_params(source, cursor, 0)["updatedafter"] == "2019-02-16T23:49:53"
    looking_back = replace(source, cursor_lookback_ms=60_000)
    assert page_params(looking_back, cursor, 0)["updatedafter"] == "2019-02-16T23:48:53"


def test_get_path() -> None:
    doc = {"a": {"b": {"c": 1}}, "x": [1]}
    assert get_path(doc, "a.b.c") == 1
    assert get_path(doc, "a.missing") is None
    assert get_path(doc, "x.y") is None


def test_extract_records(source: Any) -> None:
    assert extract_records(source, {"features": [1, 2]}) == [1, 2]
    with pytest.raises(SourceError):
        extract_records(source, {"type": "FeatureCollection"})
    with pytest.raises(SourceError):
        extract_records(source, {"features": {"not": "a list"}})


def test_record_version(source: Any) -> None:
    assert record_version(source, feature("us1", 5)) == ("us1", 5)
    with pytest.raises(RecordError):
        record_version(source, {"properties": {"updated": 5}})
    with pytest.raises(RecordError):
        record_version(source, feature("us1", "5"))  # type: ignore[arg-type]
    with pytest.raises(RecordError):
        record_version(source, {"id": "us1", "properties": {"updated": True}})


class PagedSource:
    """An in-memory source: serves `records` by limit/offset and logs each request."""

    def __init__(self, records: list[dict[str, Any]], generated_ms: int = 99_000) -> None:
        self.records = records
        self.generated_ms = generated_ms
        self.requests: list[dict[str, str]] = []

    def __call__(self, params: Mapping[str, str]) -> Mapping[str, Any]:
        self.requests.append(dict(params))
        start = int(params["offset"]) - 1
        page = self.records[start : start + int(params["limit"])]
        return {"metadata": {"generated": self.generated_ms}, "features": page}


def test_fetch_all_reads_pages_until_a_short_one(source: Any) -> None:
    records = [feature(f"e{i}", 1000 + i) for i in range(7)]
    fetch = PagedSource(records)
    result = fetch_all(source, Cursor(), fetch)
    assert result.records == records
    assert result.pages == 3
    assert result.snapshot_ms == 99_000
    assert [r["offset"] for r in fetch.requests] == ["1", "4", "7"]


def test_fetch_all_asks_one_more_page_after_a_full_one(source: Any) -> None:
    fetch = PagedSource([feature(f"e{i}", i) for i in range(6)])
    result = fetch_all(source, Cursor(), fetch)
    assert len(result.records) == 6
    assert result.pages == 3
    assert fetch.requests[-1]["offset"] == "7"


def test_every_page_carries_the_same_cursor(source: Any) -> None:
    fetch = PagedSource([feature(f"e{i}", i) for i in range(4)])
    fetch_all(source, Cursor(updated_ms=UPDATED_MS), fetch)
    assert {r["updatedafter"] for r in fetch.requests} == {"2019-02-16T23:49:53"}


def test_snapshot_time_comes_from_the_first_page(source: Any) -> None:
    fetch = PagedSource([feature(f"e{i}", i) for i in range(4)], generated_ms=5_000)
    calls = 0

    def later_pages_are_newer(params: Mapping[str, str]) -> Mapping[str, Any]:
        nonlocal calls
        calls += 1
        fetch.generated_ms = 5_000 * calls
        return fetch(params)

    assert fetch_all(source, Cursor(), later_pages_are_newer).snapshot_ms == 5_000


def test_paging_that_never_ends_is_an_error(source: Any) -> None:
    endless = replace(source, paging=replace(source.paging, max_pages=4))

    def always_full(params: Mapping[str, str]) -> Mapping[str, Any]:
        return {"features": [feature("x", 1)] * 3}

    with pytest.raises(SourceError, match="4 pages"):
        fetch_all(endless, Cursor(), always_full)


def test_select_new_versions_sorts_by_updated_then_key(source: Any) -> None:
    records = [feature("b", 30), feature("a", 30), feature("c", 10), feature("a", 20)]
    batch = select_new_versions(source, Cursor(), records)
    assert [version for version, _ in batch.records] == [("c", 10), ("a", 20), ("a", 30), ("b", 30)]
    assert batch.duplicates == 0
    assert batch.invalid == []


def test_select_new_versions_drops_seen_and_repeated_versions(source: Any) -> None:
    cursor = Cursor(updated_ms=2_500, seen=frozenset({("a", 2_500)}))
    records = [feature("a", 2_500), feature("b", 2_600), feature("b", 2_600), feature("a", 2_700)]
    batch = select_new_versions(source, cursor, records)
    assert [version for version, _ in batch.records] == [("b", 2_600), ("a", 2_700)]
    assert batch.duplicates == 2


def test_select_new_versions_reports_unreadable_records(source: Any) -> None:
    records = [feature("a", 1), {"id": "b"}, {"properties": {"updated": 3}}]
    batch = select_new_versions(source, Cursor(), records)
    assert [version for version, _ in batch.records] == [("a", 1)]
    assert len(batch.invalid) == 2
    assert all(isinstance(error, RecordError) for error in batch.invalid)
