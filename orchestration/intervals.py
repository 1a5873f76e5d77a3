"""The data interval of a DAG run, from its params or its timetable.

Airflow 3 gives a manual run no logical date unless one is asked for, and then
infers the interval that *ended* before it; a scheduled run of a
``CronDataIntervalTimetable`` gets ``[data_interval_start, data_interval_end)``.
The daily DAG therefore takes an explicit ``day`` param first, the run's data
interval second, and refuses to guess when it has neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from core.errors import UserFacingError
from core.intervals import Interval


def _aware(moment: Any) -> datetime | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if not isinstance(moment, datetime):
        raise TypeError(f"not a datetime: {moment!r}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def resolve_interval(
    params: Mapping[str, Any], data_interval_start: Any, data_interval_end: Any
) -> Interval:
    """``params["day"]`` as a UTC day when set, else the run's non-empty data interval."""
    day = params.get("day")
    if day:
        try:
            return Interval.of_day(date.fromisoformat(str(day)))
        except ValueError:
            raise UserFacingError(
                f"The param day={day!r} is not a date: give it like 2019-02-15."
            ) from None
    start, end = _aware(data_interval_start), _aware(data_interval_end)
    if start is None or end is None or end <= start:
        raise UserFacingError(
            "This run has no data interval (a manual run without a logical date, or an empty "
            'one): trigger it with the param day, e.g. {"day": "2019-02-15"}.'
        )
    return Interval(start, end)


def interval_of(context: Mapping[str, Any]) -> Interval:
    """The interval of the task's DAG run (its Airflow context)."""
    return resolve_interval(
        context.get("params") or {},
        context.get("data_interval_start"),
        context.get("data_interval_end"),
    )
