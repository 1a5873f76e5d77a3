"""The poll cursor: re-read window, seen versions, high-water cap."""

from __future__ import annotations

from producers.cursor import Cursor, window_start_ms

SECOND = 1000


def advance(
    cursor: Cursor, versions: list[tuple[str, int]], high_water_ms: int | None = None
) -> Cursor:
    return cursor.advance(
        versions, high_water_ms=high_water_ms, resolution_ms=SECOND, lookback_ms=0
    )


def test_a_new_cursor_asks_for_everything() -> None:
    cursor = Cursor()
    assert cursor.request_from_ms(resolution_ms=SECOND, lookback_ms=0) is None
    assert cursor.is_new(("a", 1))


def test_advance_moves_to_the_newest_version_and_floors_the_request() -> None:
    cursor = advance(Cursor(), [("a", 10_500), ("b", 12_250), ("c", 11_000)])
    assert cursor.updated_ms == 12_250
    assert cursor.request_from_ms(resolution_ms=SECOND, lookback_ms=0) == 12_000


def test_seen_holds_exactly_the_versions_of_the_re_read_window() -> None:
    cursor = advance(Cursor(), [("a", 11_999), ("b", 12_000), ("c", 12_250)])
    assert cursor.seen == frozenset({("b", 12_000), ("c", 12_250)})
    assert not cursor.is_new(("c", 12_250))
    # Same entity, another version in the window: new.
    assert cursor.is_new(("c", 12_900))
    # A version the server returns again only because of the whole-second floor.
    assert not cursor.is_new(("b", 12_000))


def test_seen_carries_over_when_the_window_does_not_move() -> None:
    first = advance(Cursor(), [("a", 12_100)])
    second = advance(first, [("b", 12_050)])
    assert second.updated_ms == 12_100
    assert second.seen == frozenset({("a", 12_100), ("b", 12_050)})


def test_seen_is_pruned_when_the_window_moves() -> None:
    first = advance(Cursor(), [("a", 12_100)])
    second = advance(first, [("b", 14_000)])
    assert second.seen == frozenset({("b", 14_000)})


def test_the_cursor_never_moves_backwards() -> None:
    first = advance(Cursor(), [("a", 20_000)])
    assert advance(first, [("b", 5_000)]).updated_ms == 20_000


def test_no_versions_leave_the_cursor_as_it_was() -> None:
    cursor = advance(Cursor(), [("a", 20_000)])
    assert advance(cursor, []) == cursor
    assert advance(Cursor(), []) == Cursor()


def test_the_high_water_mark_caps_the_cursor() -> None:
    # A version newer than the first page's snapshot can hide a version changed
    # during paging on a page already read: the next poll must start before it.
    cursor = advance(Cursor(), [("a", 10_000), ("b", 30_500)], high_water_ms=20_000)
    assert cursor.updated_ms == 20_000
    assert cursor.request_from_ms(resolution_ms=SECOND, lookback_ms=0) == 20_000
    # b will come again and must be recognised as seen.
    assert not cursor.is_new(("b", 30_500))
    assert cursor.is_new(("c", 25_000))


def test_lookback_widens_the_window() -> None:
    cursor = Cursor().advance(
        [("a", 10_000), ("b", 12_345)], high_water_ms=None, resolution_ms=SECOND, lookback_ms=3_000
    )
    assert cursor.request_from_ms(resolution_ms=SECOND, lookback_ms=3_000) == 9_000
    assert cursor.seen == frozenset({("a", 10_000), ("b", 12_345)})


def test_window_start() -> None:
    assert window_start_ms(12_345, resolution_ms=SECOND, lookback_ms=0) == 12_000
    assert window_start_ms(12_345, resolution_ms=1, lookback_ms=45) == 12_300
    assert window_start_ms(12_000, resolution_ms=SECOND, lookback_ms=1) == 11_000
