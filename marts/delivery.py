"""What a marts build delivered, for the dashboards: latency and freshness of the facts.

The streaming queries publish their latency as they commit; a dbt build is a batch
job, so ``marts build`` (the CLI and the daily DAG's task) publishes its *last result*
to the Pushgateway (``monitoring.batch_metrics.push_mart_build``). For each mart that
holds one row per quake version (``fct_quake_revisions``; ``fct_quakes``, the current
version of each quake):

- the versions the build delivered: the ``(quake_id, updated_ms)`` keys in the table
  after the build and not before it, in the event dates the build merged (its
  interval, lookback and revised ranges; the whole table after a full refresh or a
  first build);
- their produced-at: ``produced_at_ms`` of the version's first delivery in bronze,
  the clock the streaming latency panels use;
- latency: the build's first data commit (when the rows became visible) minus the
  produced-at, P50 / P95 / P99 over the delivered versions (NaN when it delivered
  none: the panel shows a gap, not a made-up figure);
- freshness: the newest produced-at of the versions the mart holds in those dates;
- rows: what the build's commits wrote, from Delta's operation metrics (a MERGE
  rewrites the unchanged rows of its interval too, and counts them).

``fct_network_activity_daily`` and the dimensions hold no version of a quake, and
are not measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES
from marts.arrivals import DateRange, covered_dates
from marts.profiles import marts_root
from monitoring.batch_metrics import MART_QUANTILES, push_mart_build

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: The marts with one row per quake version, measured after each build.
VERSION_MARTS = ("fct_quake_revisions", "fct_quakes")
KEY = ("quake_id", "updated_ms")
#: Commits that rewrite files without changing rows (the post-hooks' ZORDER, VACUUM).
MAINTENANCE = ("OPTIMIZE", "VACUUM START", "VACUUM END")
#: Delta's operation metrics of the rows a MERGE wrote (a write's: ``numOutputRows``).
MERGE_WRITTEN = ("numTargetRowsInserted", "numTargetRowsUpdated")


@dataclass(frozen=True)
class DataCommit:
    """One commit of the build on a mart: its version, operation, time, rows written."""

    version: int
    operation: str
    committed_ms: int
    rows: int


@dataclass(frozen=True)
class Delivery:
    """What one build delivered to one mart."""

    model: str
    rows_written: int
    committed_ms: int
    versions: int
    latency_s: dict[float, float]
    newest_produced_ms: int | None

    def line(self) -> str:
        """One line for a log or a terminal."""
        if not self.versions:
            return f"{self.model}: {self.rows_written} rows written, no new version"
        quantiles = " / ".join(f"{self.latency_s[q]:.0f}" for q in MART_QUANTILES)
        return (
            f"{self.model}: {self.rows_written} rows written, {self.versions} new versions, "
            f"produced-at to commit P50 / P95 / P99 {quantiles} s"
        )


def rows_written(metrics: dict[str, str]) -> int:
    """Rows a data commit wrote: inserted and updated by a MERGE, output by a write."""
    if "numTargetRowsInserted" in metrics:
        return sum(int(metrics.get(k, 0)) for k in MERGE_WRITTEN)
    return int(metrics.get("numOutputRows", 0))


def data_commits(history: list[tuple[int, str, int, dict[str, str]]]) -> list[DataCommit]:
    """The commits that changed rows, oldest first, from ``(version, operation, unix ms,
    metrics)`` history rows; maintenance (OPTIMIZE, VACUUM) left out."""
    return [
        DataCommit(version, operation, committed_ms, rows_written(metrics))
        for version, operation, committed_ms, metrics in sorted(history)
        if operation not in MAINTENANCE
    ]


def merged_ranges(window: dict[str, Any]) -> list[DateRange]:
    """The event-date ranges [first, last) an incremental build over ``window`` merges."""
    ranges = [covered_dates(window)]
    for first, last in window.get("revised_ranges", []):
        ranges.append((date.fromisoformat(first), date.fromisoformat(last)))
    return ranges


def _in_ranges(frame: DataFrame, ranges: list[DateRange] | None) -> DataFrame:
    from pyspark.sql import functions as F  # noqa: N812

    if ranges is None:
        return frame
    day = F.col("event_date")
    condition = None
    for first, last in ranges:
        clause = (day >= F.lit(first)) & (day < F.lit(last))
        condition = clause if condition is None else condition | clause
    return frame.where(condition)


def _history(spark: SparkSession, path: str, after_version: int) -> list[DataCommit]:
    from lake.time_travel import history

    return data_commits(
        [
            (c.version, c.operation, c.committed_ms, c.metrics)
            for c in history(spark, path, after_version)
        ]
    )


def _produced_at(spark: SparkSession, settings: Settings, versions: DataFrame) -> DataFrame:
    """``versions`` (KEY, event_date) with the produced-at of each one's first delivery."""
    from pyspark.sql import functions as F  # noqa: N812

    from spark_jobs.transforms import duration_ms

    # A version is ingested after its event, or at most ``spark.max_event_time_ahead``
    # before it (the ingest job quarantines event times further ahead): its bronze rows
    # lie in the ingest dates from that long before the oldest event date on, and
    # bronze's older partitions are skipped.
    slack_days = 1 + duration_ms(settings.spark.max_event_time_ahead) // 86_400_000
    oldest = versions.agg(F.min("event_date")).first()
    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    if oldest is not None and oldest[0] is not None:
        bronze = bronze.where(F.col("ingest_date") >= F.date_sub(F.lit(oldest[0]), slack_days))
    produced = bronze.groupBy(F.col("entity_id").alias("quake_id"), F.col("updated_ms")).agg(
        F.min("produced_at_ms").alias("produced_at_ms")
    )
    return versions.join(produced, list(KEY), "left")


def _newest(held: DataFrame) -> int | None:
    from pyspark.sql import functions as F  # noqa: N812

    row = held.agg(F.max("produced_at_ms")).first()
    return None if row is None or row[0] is None else int(row[0])


def measure(
    spark: SparkSession,
    settings: Settings,
    model: str,
    version_before: int | None,
    ranges: list[DateRange] | None,
) -> Delivery | None:
    """What the build delivered to ``model`` after ``version_before`` (None: the table did
    not exist), in the event-date ``ranges`` (None: all); None when it committed nothing."""
    from pyspark.sql import functions as F  # noqa: N812

    path = f"{marts_root(settings)}/{model}"
    commits = _history(spark, path, -1 if version_before is None else version_before)
    if not commits:
        return None
    committed_ms = commits[0].committed_ms
    table = spark.read.format("delta").option("versionAsOf", commits[-1].version).load(path)
    after = _in_ranges(table, ranges).select(*KEY, "event_date")
    new = after.select(*KEY)
    if version_before is not None:
        before = spark.read.format("delta").option("versionAsOf", version_before).load(path)
        new = new.join(_in_ranges(before, ranges).select(*KEY), list(KEY), "left_anti")
    held = (
        _produced_at(spark, settings, after)
        .join(new.withColumn("is_new", F.lit(True)), list(KEY), "left")
        .withColumn("is_new", F.coalesce("is_new", F.lit(False)))
    )
    latency = (F.lit(committed_ms) - F.col("produced_at_ms")) / 1000.0
    figures = held.agg(
        F.count(F.when(F.col("is_new"), 1)).alias("versions"),
        F.max("produced_at_ms").alias("newest"),
        F.percentile_approx(F.when(F.col("is_new"), latency), list(MART_QUANTILES), 10_000).alias(
            "q"
        ),
    ).first()
    assert figures is not None
    newest = None if figures["newest"] is None else int(figures["newest"])
    if newest is None and ranges is not None:
        # Nothing in the build's dates (a day without quakes): the newest data is older.
        newest = _newest(_produced_at(spark, settings, table.select(*KEY, "event_date")))
    quantiles = figures["q"] or [math.nan] * len(MART_QUANTILES)
    return Delivery(
        model=model,
        rows_written=sum(c.rows for c in commits),
        committed_ms=committed_ms,
        versions=int(figures["versions"]),
        latency_s=dict(zip(MART_QUANTILES, (float(q) for q in quantiles), strict=True)),
        newest_produced_ms=newest,
    )


def publish(settings: Settings, delivery: Delivery) -> None:
    """Push ``delivery`` to the Pushgateway (``MetricsPushError`` when it is not there)."""
    push_mart_build(
        settings,
        model=delivery.model,
        finished_at=delivery.committed_ms / 1000.0,
        # An empty mart holds no data to be fresh: NaN, a gap on the freshness panel.
        newest_data_at=(
            math.nan if delivery.newest_produced_ms is None else delivery.newest_produced_ms / 1000
        ),
        rows=delivery.rows_written,
        latency_quantiles_s=delivery.latency_s,
    )


def versions_before(spark: SparkSession, settings: Settings) -> dict[str, int | None]:
    """Each measured mart's version before a build; None where the table does not exist."""
    from lake.time_travel import latest_version
    from spark_jobs.delta_io import table_exists

    root = marts_root(settings)
    return {
        model: latest_version(spark, f"{root}/{model}")
        if table_exists(spark, f"{root}/{model}")
        else None
        for model in VERSION_MARTS
    }


def deliveries(
    spark: SparkSession,
    settings: Settings,
    before: dict[str, int | None],
    ranges: list[DateRange] | None,
) -> list[Delivery]:
    """What the build delivered to each measured mart (those it committed to)."""
    measured = (measure(spark, settings, model, before[model], ranges) for model in before)
    return [delivery for delivery in measured if delivery is not None]
