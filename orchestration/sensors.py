"""Wait until bronze's watermark has passed the interval's end plus the allowed lateness.

Bronze's watermark is the newest Kafka timestamp it holds: every on-time
event of the interval (event time before its end, Kafka timestamp at most
``spark.watermark_delay`` later) has reached bronze once the watermark is
past ``end + watermark_delay``, as long as the stream reads the topic's
partitions together (Spark's Kafka source does). Later arrivals are late by
definition (``is_late``) and are picked up by the next days' lookback.

The sensor looks once in the worker; when the answer is no, it defers to
the triggerer, whose trigger reads bronze's newest commits without Spark
(``lake.delta_log``) every ``poke_interval`` seconds, and gives up after
``timeout`` (the task then fails, without a retry: waiting again would not
change the stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

from lake.delta_log import DeltaLogError, newest_value
from lake.tables import BRONZE_QUAKE_CHANGES
from orchestration.config import settings as runtime_settings
from orchestration.intervals import interval_of

#: The column bronze's watermark is read from.
WATERMARK_COLUMN = "kafka_timestamp"


def bronze_watermark(table_path: str) -> datetime | None:
    """Bronze's newest Kafka timestamp (None while bronze holds nothing)."""
    return newest_value(table_path, WATERMARK_COLUMN)


def is_complete(watermark: datetime | None, target: datetime) -> bool:
    """Whether a watermark has reached ``target`` (the interval's end plus the lateness)."""
    return watermark is not None and watermark >= target


class BronzeWatermarkTrigger(BaseTrigger):
    """Fires once bronze's watermark reaches ``target``; looks every ``poke_interval_s``."""

    def __init__(self, table_path: str, target: str, poke_interval_s: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.table_path = table_path
        self.target = target
        self.poke_interval_s = poke_interval_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "table_path": self.table_path,
                "target": self.target,
                "poke_interval_s": self.poke_interval_s,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        target = datetime.fromisoformat(self.target)
        while True:
            try:
                # pyarrow reads block: off the triggerer's event loop.
                watermark = await asyncio.to_thread(bronze_watermark, self.table_path)
            except DeltaLogError as error:
                self.log.warning("bronze cannot be read yet: %s", error)
                watermark = None
            if is_complete(watermark, target):
                assert watermark is not None
                yield TriggerEvent(  # type: ignore[no-untyped-call]
                    {"status": "complete", "watermark": watermark.isoformat()}
                )
                return
            self.log.info(
                "bronze's watermark %s has not reached %s; next look in %.0f s",
                watermark.isoformat() if watermark else "(none)",
                self.target,
                self.poke_interval_s,
            )
            await asyncio.sleep(self.poke_interval_s)


class BronzeWatermarkSensor(BaseSensorOperator):
    """Deferrable: succeeds when bronze's watermark passed the interval's end plus lateness."""

    def __init__(self, *, deferrable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: False: poke in the worker between sleeps (no triggerer needed); True: defer.
        self.deferrable = deferrable

    def target(self, context: Any) -> datetime:
        """The interval's end plus the allowed lateness."""
        from spark_jobs.transforms import duration_ms  # pyspark: not at parse time

        lateness = duration_ms(runtime_settings().spark.watermark_delay)
        return interval_of(context).end + timedelta(milliseconds=lateness)

    def _table_path(self) -> str:
        return BRONZE_QUAKE_CHANGES.path(runtime_settings().lake_uri)

    def poke(self, context: Any) -> bool:
        try:
            watermark = bronze_watermark(self._table_path())
        except DeltaLogError as error:
            self.log.warning("bronze cannot be read yet: %s", error)
            return False
        self.log.info("bronze's watermark: %s, needed: %s", watermark, self.target(context))
        return is_complete(watermark, self.target(context))

    def execute(self, context: Any) -> dict[str, str]:
        target = self.target(context)
        if not self.deferrable:
            super().execute(context)
            return {"status": "complete", "target": target.isoformat()}
        if self.poke(context):
            return {"status": "complete", "target": target.isoformat()}
        self.defer(
            trigger=BronzeWatermarkTrigger(
                self._table_path(), target.isoformat(), self.poke_interval
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )
        raise AssertionError("defer() raises")  # pragma: no cover

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, str]:
        if not event or event.get("status") != "complete":
            raise RuntimeError(f"the bronze watermark trigger ended without an answer: {event}")
        self.log.info("bronze's watermark %s passed %s", event["watermark"], self.target(context))
        return {"status": "complete", "watermark": str(event["watermark"])}
