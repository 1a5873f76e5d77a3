"""The replay DAG's work: a range through the stream's own transforms, then every difference.

The replay writes the side tables (``<layer>_replay``), never the live ones:
a scheduled job must not rewrite what the stream owns. The reconciliation is
scoped to what the range touched (its quakes in silver, the minutes and the
sliding hours its events fall in), both ways, so a replay of one hour is not
compared with side tables holding other ranges. No range: whole tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pyspark.sql import functions as F  # noqa: N812

from core.errors import UserFacingError
from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES, QUAKE_WINDOWS_1H, QUAKE_WINDOWS_1M, SILVER_QUAKES
from spark_jobs import reconcile, replay, transforms

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

Source = Literal["bronze", "kafka"]
HOUR_WINDOW = ("1 hour", "5 minutes")


@dataclass(frozen=True)
class ReplayRange:
    """What to replay: bronze rows by ingestion time, or Kafka records by timestamp."""

    source: Source
    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ReplayRange:
        source = params.get("source", "bronze")
        if source not in ("bronze", "kafka"):
            raise UserFacingError(f"The param source={source!r} must be bronze or kafka.")

        def moment(name: str) -> datetime | None:
            text = params.get(name)
            if not text:
                return None
            try:
                return datetime.fromisoformat(str(text))
            except ValueError:
                raise UserFacingError(
                    f"The param {name}={text!r} is not an ISO time: "
                    "write it like 2026-11-26T12:00:00+00:00."
                ) from None

        span = cls(source, moment("from_time"), moment("to_time"))
        if span.start and span.end and span.end <= span.start:
            raise UserFacingError(f"The range {span.start} .. {span.end} is empty.")
        return span

    @property
    def bounded(self) -> bool:
        return self.start is not None or self.end is not None


def run_replay(spark: SparkSession, settings: Settings, span: ReplayRange) -> dict[str, int]:
    """Replay the range into the side tables; the counts per table."""
    if span.source == "bronze":
        return replay.replay_bronze(spark, settings, span.start, span.end, to_live=False)
    kafka_range = replay.KafkaRange(
        starting_timestamp_ms=int(span.start.timestamp() * 1000) if span.start else None,
        ending_timestamp_ms=int(span.end.timestamp() * 1000) if span.end else None,
    )
    return replay.replay_kafka(spark, settings, kafka_range, to_live=False)


def range_rows(spark: SparkSession, settings: Settings, span: ReplayRange) -> DataFrame:
    """The live bronze rows the range covers."""
    rows = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    column = "ingested_at" if span.source == "bronze" else "kafka_timestamp"
    if span.start is not None:
        rows = rows.where(F.col(column) >= F.lit(span.start))
    if span.end is not None:
        rows = rows.where(F.col(column) < F.lit(span.end))
    return rows


def _load(spark: SparkSession, path: str) -> DataFrame:
    return spark.read.format("delta").load(path)


def reconcile_range(
    spark: SparkSession,
    settings: Settings,
    span: ReplayRange,
    closed_before: datetime | None = None,
) -> list[reconcile.Difference]:
    """Every difference between the live tables and the replay, within what the range touched."""
    if not span.bounded:
        return reconcile.reconcile(spark, settings, closed_before=closed_before)
    lake = settings.lake_uri
    rows = range_rows(spark, settings, span)
    entities = rows.select("entity_id").distinct()
    minutes = (
        transforms.with_event_time(rows)
        .select(
            F.window("event_time", "1 minute").start.alias("window_start"),
            F.coalesce(F.col("net"), F.lit("?")).alias("net"),
        )
        .distinct()
    )
    hours = transforms.windows_containing(minutes, *HOUR_WINDOW).distinct()
    differences: list[reconcile.Difference] = []
    for table, keys, on in (
        (QUAKE_WINDOWS_1M, minutes, ["window_start", "net"]),
        (QUAKE_WINDOWS_1H, hours, list(transforms.WINDOW_KEY)),
    ):
        live = _load(spark, table.path(lake)).join(keys, on, "left_semi")
        replayed = _load(spark, replay.replay_table(table).path(lake)).join(keys, on, "left_semi")
        if closed_before is not None:
            live = live.where(F.col("window_end") <= F.lit(closed_before))
            replayed = replayed.where(F.col("window_end") <= F.lit(closed_before))
        found = reconcile.compare(live, replayed, transforms.WINDOW_KEY, reconcile.WINDOW_VALUES)
        differences += reconcile.as_differences(table.name, found.collect(), transforms.WINDOW_KEY)
    live_silver = _load(spark, SILVER_QUAKES.path(lake)).join(entities, "entity_id", "left_semi")
    replay_silver = _load(spark, replay.replay_table(SILVER_QUAKES).path(lake)).join(
        entities, "entity_id", "left_semi"
    )
    found = reconcile.compare(live_silver, replay_silver, ("entity_id",), reconcile.SILVER_VALUES)
    differences += reconcile.as_differences(SILVER_QUAKES.name, found.collect(), ("entity_id",))
    return differences


def describe(differences: list[reconcile.Difference], limit: int = 10) -> str:
    """The differences as one message (the first ``limit`` of them)."""
    lines = [f"{d.table} {d.key}: live={d.live} replay={d.replay}" for d in differences[:limit]]
    if len(differences) > limit:
        lines.append(f"... and {len(differences) - limit} more")
    return f"{len(differences)} differences between live and replay:\n" + "\n".join(lines)
