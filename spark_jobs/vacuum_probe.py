"""What a full VACUUM of a small table costs at Spark's default listing parallelism and at
the settings' (``spark.file_listing_parallelism``), side by side in one JVM.

Delta's full VACUUM lists the table's folders in a job of
``spark.sql.sources.parallelPartitionDiscovery.parallelism`` tasks, whatever the
number of folders; Spark's default is 10,000. The probe writes a table of
``--days`` day partitions in a temporary folder of the state directory, runs
one warm-up VACUUM, then ``--rounds`` rounds of a VACUUM at each parallelism
(alternating, so both see the same machine), and prints every time and the
medians. No service needed (Spark's in-memory catalog):
``python -m spark_jobs.vacuum_probe 2>/dev/null``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from core.settings import Settings
from spark_jobs.session import FILE_LISTING_PARALLELISM, build_spark

#: Spark's own default of the listing parallelism.
SPARK_DEFAULT = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4, help="day partitions of the table")
    parser.add_argument("--rounds", type=int, default=3, help="VACUUMs at each parallelism")
    args = parser.parse_args()
    settings = Settings()
    settings = settings.model_copy(
        update={"catalog": settings.catalog.model_copy(update={"kind": "in-memory"})}
    )
    spark = build_spark(settings, "streamhouse-vacuum-probe")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.state_dir, prefix="vacuum-probe-") as folder:
        for day in range(args.days):
            rows = spark.range(100).selectExpr("id", f"date'2019-02-10' + {day} AS day")
            rows.write.format("delta").mode("append").partitionBy("day").save(folder)

        def full_vacuum(parallelism: int) -> float:
            spark.conf.set(FILE_LISTING_PARALLELISM, str(parallelism))
            began = time.monotonic()
            spark.sql(f"VACUUM delta.`{folder}`").collect()
            return time.monotonic() - began

        ours = settings.spark.file_listing_parallelism
        full_vacuum(ours)  # warm-up: the first VACUUM of the JVM loads its classes
        times: dict[int, list[float]] = {SPARK_DEFAULT: [], ours: []}
        for _ in range(args.rounds):
            for parallelism, seconds in times.items():
                seconds.append(full_vacuum(parallelism))
    for parallelism, seconds in times.items():
        each = ", ".join(f"{s:.1f}" for s in seconds)
        print(
            f"full VACUUM of {args.days} day partitions, listing parallelism {parallelism}: "
            f"{each} s (median {statistics.median(seconds):.1f} s)"
        )
    spark.stop()


if __name__ == "__main__":
    main()
