"""End-to-end latency of every row, from Delta's change data feed, and what it says.

A row's latency is its commit time (``_commit_timestamp`` of the version that
made it visible) minus the time it was sent (its Kafka record's timestamp;
for a window, the newest ``produced_at_ms`` it holds). The benchmark keeps
these per-row latencies (Parquet) and computes everything from them: the
percentiles, the plot and the cold start, so the figures and the picture
cannot disagree.

Cold start: the time from a job's start until latency settles, i.e. the
start of the first run of ``SETTLED_BUCKETS`` 5-second buckets (30 s) whose
P95 stays within ``SETTLED_FACTOR`` of the steady P95 (or ``SETTLED_SLACK_MS``
above it). Steady-state percentiles leave out every row sent before that; a
spike later on stays in them (it is not a cold start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

BUCKET_MS = 5_000
SETTLED_FACTOR = 1.5
SETTLED_SLACK_MS = 1_000
SETTLED_BUCKETS = 6


def row_latencies(spark: SparkSession, path: str, sent_ms_column: str) -> DataFrame:
    """``sent_ms``, ``latency_ms`` of every row inserted or updated in the Delta table."""
    from pyspark.sql import functions as F  # noqa: N812

    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 0)
        .load(path)
        .where(F.col("_change_type").isin("insert", "update_postimage"))
    )
    sent = F.col(sent_ms_column)
    if dict(changes.dtypes)[sent_ms_column] == "timestamp":
        sent = F.unix_millis(sent)
    return changes.select(
        sent.alias("sent_ms"), (F.unix_millis("_commit_timestamp") - sent).alias("latency_ms")
    ).where(F.col("sent_ms").isNotNull())


@dataclass(frozen=True)
class Percentiles:
    """P50 / P95 / P99 in milliseconds, and how many rows they are of."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rows: int

    @classmethod
    def of(cls, latencies: pd.Series) -> Percentiles:
        """Exact percentiles (linear interpolation) of a series of latencies."""
        if latencies.empty:
            return cls(None, None, None, 0)
        p50, p95, p99 = (float(latencies.quantile(q)) for q in (0.5, 0.95, 0.99))
        return cls(p50, p95, p99, int(latencies.size))


def bucket_p95(rows: pd.DataFrame, start_ms: int) -> pd.Series:
    """P95 latency per 5-second bucket of ``sent_ms`` from ``start_ms`` (index: bucket start, s)."""
    buckets = (rows["sent_ms"] - start_ms) // BUCKET_MS
    p95 = rows.groupby(buckets)["latency_ms"].quantile(0.95)
    p95.index = p95.index * (BUCKET_MS // 1000)
    return p95.sort_index()


def settle_ms(rows: pd.DataFrame, job_started_ms: int, steady_from_ms: int) -> int | None:
    """When latency settled (epoch ms): the start of the first run of ``SETTLED_BUCKETS``
    buckets whose P95 stays within the settled band around the steady P95.

    The steady P95 is that of the rows sent from ``steady_from_ms`` on (the
    second half of the first phase). None when it never settled.
    """
    steady = rows[rows["sent_ms"] >= steady_from_ms]["latency_ms"]
    if steady.empty:
        return None
    steady_p95 = float(steady.quantile(0.95))
    band = max(steady_p95 * SETTLED_FACTOR, steady_p95 + SETTLED_SLACK_MS)
    run_start, run_length = None, 0
    for bucket_s, value in bucket_p95(rows, job_started_ms).items():
        if value > band:
            run_start, run_length = None, 0
            continue
        if run_start is None:
            run_start = int(bucket_s)
        run_length += 1
        if run_length >= SETTLED_BUCKETS:
            return job_started_ms + run_start * 1000
    return None
