"""Which days ``streamhouse airflow run-daily`` and the demo run as a backfill."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from streamhouse.daily_run import is_backfill


def test_a_day_that_is_over_in_utc_is_a_backfill_today_is_not() -> None:
    now = datetime(2026, 12, 7, 0, 30, tzinfo=UTC)
    assert is_backfill(date(2026, 12, 6), now)
    assert is_backfill(date(2019, 2, 15), now)
    assert not is_backfill(date(2026, 12, 7), now)
    assert not is_backfill(date(2026, 12, 8), now)


def test_the_day_is_judged_in_utc_whatever_the_clock_s_zone() -> None:
    # 00:30 in UTC+2 is 22:30 UTC of the day before: that day is not over yet.
    now = datetime(2026, 12, 7, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert not is_backfill(date(2026, 12, 6), now)
    assert is_backfill(date(2026, 12, 5), now)
