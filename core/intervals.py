"""The data interval a batch job works on: ``[start, end)`` in event time, UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True)
class Interval:
    """``[start, end)`` in event time; both bounds aware (UTC)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("the interval's bounds must be aware datetimes (UTC)")
        if self.end <= self.start:
            raise ValueError(f"the interval {self.start} .. {self.end} is empty")

    @classmethod
    def of_day(cls, day: date) -> Interval:
        """The UTC day ``day``."""
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return cls(start, start + timedelta(days=1))

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    @property
    def start_date(self) -> date:
        """The date of the interval's first instant (UTC)."""
        return self.start.astimezone(UTC).date()

    @property
    def end_date(self) -> date:
        """The first date wholly after the interval (UTC): [start_date, end_date) covers it."""
        last = self.end.astimezone(UTC) - timedelta(microseconds=1)
        return last.date() + timedelta(days=1)

    def label(self) -> str:
        """``2019-02-15`` for a whole UTC day, else both bounds."""
        if self.end - self.start == timedelta(days=1) and self.start.astimezone(UTC).hour == 0:
            start = self.start.astimezone(UTC)
            if start.minute == start.second == start.microsecond == 0:
                return start.date().isoformat()
        return f"{self.start.isoformat()} .. {self.end.isoformat()}"
