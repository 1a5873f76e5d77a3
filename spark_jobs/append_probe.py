"""What an append costs with a Delta transaction id (``txnAppId``/``txnVersion``) and
without one, side by side in one JVM, on tables of several sizes.

Delta 4.4 rebuilds a table's state on every append that carries a transaction
id, to look the id up (``Snapshot.transactions``). The probe writes, for each
``--files`` size, a table of that many files partitioned by day in a temporary
folder of the state directory, then ``--rounds`` pairs of appends of
``--rows`` rows, with and without the id alternately (so both see the same
machine), and prints the medians of each kind after the first pair (the
JIT's). No service needed (Spark's in-memory catalog):
``python -m spark_jobs.append_probe 2>/dev/null``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from pyspark.sql import functions as F  # noqa: N812

from core.settings import Settings
from spark_jobs.session import build_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, action="append", help="table sizes, in files")
    parser.add_argument("--rows", type=int, default=15_000, help="rows of each append")
    parser.add_argument("--rounds", type=int, default=12, help="appends of each kind")
    args = parser.parse_args()
    sizes = args.files or [2_000, 8_000]
    settings = Settings()
    settings = settings.model_copy(
        update={"catalog": settings.catalog.model_copy(update={"kind": "in-memory"})}
    )
    spark = build_spark(settings, "streamhouse-append-probe")
    settings.state_dir.mkdir(parents=True, exist_ok=True)

    def rows(count: int, first_offset: int):  # type: ignore[no-untyped-def]
        return (
            spark.range(count)
            .withColumn("kafka_offset", F.col("id") + first_offset)
            .withColumn("payload", F.sha2(F.col("id").cast("string"), 256))
            .withColumn("ingest_date", F.lit("2026-12-07").cast("date"))
        )

    with tempfile.TemporaryDirectory(dir=settings.state_dir, prefix="append-probe-") as folder:
        for files in sizes:
            path = f"{folder}/t{files}"
            rows(files * 10, 0).repartition(files).write.format("delta").partitionBy(
                "ingest_date"
            ).save(path)
            times: dict[str, list[float]] = {"with a transaction id": [], "without": []}
            for number in range(args.rounds * 2):
                kind = "with a transaction id" if number % 2 == 0 else "without"
                writer = (
                    rows(args.rows, 10**9 + number * args.rows)
                    .coalesce(1)
                    .write.format("delta")
                    .mode("append")
                    .partitionBy("ingest_date")
                )
                if kind != "without":
                    writer = writer.option("txnAppId", "probe").option("txnVersion", number)
                began = time.monotonic()
                writer.save(path)
                times[kind].append(time.monotonic() - began)
            for kind, seconds in times.items():
                print(
                    f"append of {args.rows:,} rows to a table of {files:,} files, {kind}: "
                    f"median {statistics.median(seconds[1:]):.2f} s "
                    f"(min {min(seconds[1:]):.2f}, max {max(seconds[1:]):.2f})"
                )
    spark.stop()


if __name__ == "__main__":
    main()
