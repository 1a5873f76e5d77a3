"""What one micro-batch's write of the minute windows costs, side by side in one JVM:
the MERGE the window query runs (``aggregates_stream.WindowMerger``) against an
overwrite of the same rows with ``replaceWhere``.

The probe builds a minute-window table as the live query does (one day,
``--networks`` networks, grown by MERGEs of 30 minutes each) in a temporary
folder of the state directory, then runs ``--rounds`` pairs of writes of the
last two minutes' windows (one window per network changed, one new), each kind
alternately, and prints per kind the median seconds after the first pair (the
JIT's) and the Spark jobs one write runs. No service needed (Spark's in-memory
catalog): ``python -m spark_jobs.merge_probe 2>/dev/null``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, SparkSession

from core.settings import Settings
from lake.tables import QUAKE_WINDOWS_1M
from spark_jobs import transforms
from spark_jobs.aggregates_stream import MINUTE, WindowMerger
from spark_jobs.delta_io import ensure_table
from spark_jobs.session import build_spark

NETWORKS = ("ak", "ci", "hv", "nc", "nn", "pr", "tx", "us", "uu", "uw")
DAY = datetime(2026, 12, 7)


def minute_windows(spark: SparkSession, minutes: range, networks: int, seed: int) -> DataFrame:
    """Windows of three events a network and minute, as the window query aggregates them."""
    rows = [
        (DAY + timedelta(minutes=m, seconds=s), net, ((m * 7 + s + seed) % 50) / 10, f"{m}-{s}")
        for m in minutes
        for net in NETWORKS[:networks]
        for s in (1, 20, 40)
    ]
    events = spark.createDataFrame(
        rows, "event_time timestamp, net string, mag double, entity_id string"
    )
    return transforms.window_aggregates(
        events.withColumn("produced_at_ms", events.event_time.cast("long") * 1000), MINUTE
    )


def replace_where(path: str) -> Callable[[DataFrame, int], None]:
    """Write the changed windows as an overwrite of exactly their keys (one Delta commit)."""

    def write(windows: DataFrame, batch_id: int) -> None:
        changed = windows.collect()
        keys = " OR ".join(
            f"(window_start = {transforms.sql_timestamp(r.window_start)} AND net = '{r.net}')"
            for r in changed
        )
        source = windows.sparkSession.createDataFrame(changed, windows.schema)
        source.write.format("delta").mode("overwrite").option("replaceWhere", keys).save(path)

    return write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="writes of each kind")
    parser.add_argument("--networks", type=int, default=6, choices=range(1, len(NETWORKS) + 1))
    args = parser.parse_args()
    settings = Settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.state_dir, prefix="merge-probe-") as folder:
        settings = settings.model_copy(
            update={
                "catalog": settings.catalog.model_copy(update={"kind": "in-memory"}),
                "lake_root": folder,
            }
        )
        spark = build_spark(settings, "streamhouse-merge-probe")
        path = QUAKE_WINDOWS_1M.path(settings.lake_uri)
        merge = WindowMerger(settings, QUAKE_WINDOWS_1M)
        ensure_table(spark, QUAKE_WINDOWS_1M, path, minute_windows(spark, range(1), 1, 0).limit(0))
        for first in range(0, 1200, 30):
            merge(minute_windows(spark, range(first, first + 30), args.networks, 0), first)
        kinds: dict[str, Callable[[DataFrame, int], None]] = {
            "MERGE (the window query's)": merge,
            "overwrite with replaceWhere": replace_where(path),
        }
        seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
        jobs: dict[str, list[int]] = {kind: [] for kind in kinds}
        tracker = spark.sparkContext.statusTracker()
        for number in range(args.rounds * 2):
            kind = list(kinds)[number % 2]
            minute = 1196 + number % 3
            windows = minute_windows(spark, range(minute, minute + 2), args.networks, number + 1)
            group = f"merge-probe-{number}"
            spark.sparkContext.setJobGroup(group, kind)
            began = time.monotonic()
            kinds[kind](windows, number)
            seconds[kind].append(time.monotonic() - began)
            jobs[kind].append(len(tracker.getJobIdsForGroup(group)))
        table = spark.read.format("delta").load(path)
        files = len(table.inputFiles())
        for kind in kinds:
            rest = seconds[kind][1:]
            print(
                f"{kind} of {2 * args.networks} windows into a table of {files} files: "
                f"median {statistics.median(rest):.2f} s "
                f"(min {min(rest):.2f}, max {max(rest):.2f}), "
                f"{statistics.median(jobs[kind][1:]):.0f} Spark jobs"
            )
        spark.stop()


if __name__ == "__main__":
    main()
