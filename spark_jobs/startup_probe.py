"""Where a short-lived Spark process's first seconds go (an Airflow task's, a CLI command's).

Prints, in seconds: the SparkSession's start, the first Delta read of bronze
(plan, codegen, the Delta log), the first SQL on a path identifier (which
starts the Hive metastore client: Spark first asks the metastore whether
``delta`` is a database), and the same Delta read again (warm). Extra JVM
options go to the driver, e.g. ``-XX:TieredStopAtLevel=1`` (the JIT's C1
only, for processes too short for C2 to pay back).

Needs bronze under the settings' lake and the stack's PostgreSQL:
``streamhouse stack up postgres``, then
``python -m spark_jobs.startup_probe [--java-option OPTION]... 2>/dev/null``.
"""

from __future__ import annotations

import argparse
import os
import time
from itertools import pairwise

from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES
from spark_jobs.session import build_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--java-option", action="append", default=[], help="a driver JVM option")
    args = parser.parse_args()
    if args.java_option:
        options = " ".join(args.java_option)
        os.environ["PYSPARK_SUBMIT_ARGS"] = f'--driver-java-options "{options}" pyspark-shell'
    settings = Settings()
    path = BRONZE_QUAKE_CHANGES.path(settings.lake_uri)
    marks = [("start", time.monotonic())]
    spark = build_spark(settings, "startup-probe")
    marks.append(("session", time.monotonic()))
    spark.read.format("delta").load(path).select("ingest_date").distinct().count()
    marks.append(("first Delta read", time.monotonic()))
    spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").collect()
    marks.append(("first path SQL (metastore client)", time.monotonic()))
    spark.read.format("delta").load(path).select("ingest_date").distinct().count()
    marks.append(("the same read again", time.monotonic()))
    spark.stop()
    steps = [f"{name} {end - begin:.1f}" for (_, begin), (name, end) in pairwise(marks)]
    print(f"{', '.join(steps)}; total {marks[-1][1] - marks[0][1]:.1f} s", flush=True)


if __name__ == "__main__":
    main()
