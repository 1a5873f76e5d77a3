"""The driver JVM's class archive (AppCDS): Spark's classes mapped from a file, not loaded anew.

A driver JVM spends its first seconds loading and verifying some 20,000
classes (Spark, Delta, Scala, Hive, Netty). Java's class data sharing lets a
JVM map them, already parsed and verified, from an archive that an earlier
JVM wrote at exit (``-XX:ArchiveClassesAtExit``, JDK 13+). Measured on two
cores, three pairs side by side: a session, its first Delta read and first SQL on
a path took 12.5-12.8 against 15.2-16.2 s (``python -m spark_jobs.startup_probe``,
with and without ``STREAMHOUSE_SPARK__CLASS_ARCHIVE=false``; spark_jobs/README.md).

``streamhouse jars`` (so ``make install``) builds the archive once per JDK,
pyspark and connector jar set, by running a short representative job
(``python -m spark_jobs.class_archive OUT``: Delta writes, a MERGE, OPTIMIZE,
Avro, a windowed stream into ``foreachBatch``) and exiting the JVM normally,
which is when the JVM writes it. ``build_spark`` then starts every driver with
``-XX:SharedArchiveFile``.

Two rules of the JVM decide the design:
- The archive holds classes of the class path it was written with, and a
  later JVM uses it only if its class path starts with the same entries, the
  same files (path, size, modification time). No class path entry of the
  archive may be a non-empty directory. So the archive's class path is
  pyspark's own jars, identical in every process, and the per-stack entries
  (PostgreSQL's JDBC driver and the private ``hive-site.xml`` folder) are
  appended after them (``SPARK_DIST_CLASSPATH``, ``spark_jobs.session``).
- A JVM that cannot use the archive (another JDK build, a changed jar, a
  class path that does not match) falls back to loading classes as usual,
  silently: nothing breaks, it is only slower. ``test_class_archive.py`` checks
  that a driver really maps Spark's classes from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from core.settings import Settings

ARCHIVE_PREFIX = "spark-driver-"


def java_binary() -> Path | None:
    """The ``java`` PySpark launches: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home) / "bin" / "java" if home else shutil.which("java")
    if found is None or not Path(found).exists():
        return None
    return Path(found).resolve()


def archive_key(java: Path, pyspark_dir: Path, pyspark_version: str, jars: Sequence[Path]) -> str:
    """What an archive depends on: the JDK build (its binary's path, size and time), the
    pyspark install (its folder: the archive's class path names its jars by path) and version,
    and the connector jars. A change in any gives another archive."""
    parts = [str(java), *_identity(java), str(pyspark_dir), pyspark_version]
    parts += [f"{jar.name}:{':'.join(_identity(jar))}" for jar in sorted(jars)]
    return _digest(parts)


def _digest(parts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _identity(path: Path) -> tuple[str, str]:
    stat = path.stat()
    return str(stat.st_size), str(stat.st_mtime_ns)


def archive_path(settings: Settings) -> Path | None:
    """Where the archive for this JDK, pyspark and jar set lives (None: no java found)."""
    import pyspark

    from spark_jobs.session import connector_jars

    java = java_binary()
    if java is None:
        return None
    pyspark_dir = Path(pyspark.__file__).parent.resolve()
    key = archive_key(java, pyspark_dir, pyspark.__version__, connector_jars(settings))
    # One name prefix per pyspark install: two checkouts sharing the jar cache keep one archive
    # each, and a new build replaces only its own install's older ones.
    install = _digest([str(pyspark_dir)])[:8]
    return settings.jars_dir / "class-archives" / f"{ARCHIVE_PREFIX}{install}-{key}.jsa"


def java_options(settings: Settings) -> list[str]:
    """The driver's JVM options that map the archive; none when it is off or not built."""
    if not settings.spark.class_archive:
        return []
    path = archive_path(settings)
    if path is None or not path.is_file():
        return []
    return [f"-XX:SharedArchiveFile={path}", "-Xshare:auto"]


def ensure(settings: Settings, report: Callable[[str], None]) -> Path | None:
    """Build the archive unless it exists; returns it. A failed build is reported with its
    log and leaves drivers as they were (slower, not broken)."""
    target = archive_path(settings) if settings.spark.class_archive else None
    if target is None:
        report("Spark class archive: off (spark.class_archive) or no java found")
        return None
    if target.is_file():
        report(f"Spark class archive: ready ({target.name})")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.stem}.{os.getpid()}.partial")
    log = settings.state_dir / "logs" / "class-archive.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with log.open("w") as handle:
        try:
            code = subprocess.call(
                [sys.executable, "-m", "spark_jobs.class_archive", str(partial)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=900,
            )
        except subprocess.TimeoutExpired:
            code = -1
    if code != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        report(
            f"Spark class archive: not built (exit {code}), drivers start without it; log: {log}"
        )
        return None
    partial.replace(target)
    install = target.stem.rsplit("-", 1)[0]
    for stale in target.parent.glob(f"{install}-*.jsa"):  # not a build in progress
        if stale != target:
            stale.unlink(missing_ok=True)
    size_mb = target.stat().st_size / 1e6
    report(f"Spark class archive: built in {time.monotonic() - began:.0f} s ({size_mb:.0f} MB)")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m spark_jobs.class_archive OUT.jsa", file=sys.stderr)
        return 2
    out = Path(args[0]).resolve()
    with tempfile.TemporaryDirectory(prefix="streamhouse-class-archive-") as work:
        train(Settings(), out, Path(work))
    return 0 if out.is_file() else 1


def train(settings: Settings, out: Path, work: Path) -> None:
    """Run the representative job in a driver that writes its classes to ``out`` at exit."""
    from pyspark import SparkContext
    from pyspark.sql import functions as F  # noqa: N812
    from pyspark.sql.avro.functions import from_avro, to_avro

    from spark_jobs.session import build_spark

    settings = settings.model_copy(
        update={
            "state_dir": work / "state",
            "lake_root": str(work / "lake"),
            # The archive's class path must be pyspark's jars alone: no catalog entries.
            "catalog": settings.catalog.model_copy(update={"kind": "in-memory"}),
            "spark": settings.spark.model_copy(update={"class_archive": False}),
        }
    )
    spark = build_spark(
        settings,
        "class-archive",
        extra_config={"spark.driver.extraJavaOptions": f"-XX:ArchiveClassesAtExit={out}"},
    )
    table, windows = str(work / "lake" / "events"), str(work / "lake" / "windows")
    events = spark.range(5000).select(
        F.col("id").alias("entity_id"),
        (F.col("id") % 5).alias("version"),
        F.timestamp_seconds(F.lit(1_700_000_000) + F.col("id")).alias("event_time"),
    )
    events = events.withColumn("event_date", F.to_date("event_time"))
    events.write.format("delta").partitionBy("event_date").save(table)
    events.where(F.col("entity_id") % 3 == 0).withColumn(
        "version", F.col("version") + 1
    ).createOrReplaceTempView("changes")
    spark.sql(
        f"MERGE INTO delta.`{table}` t USING changes c ON t.entity_id = c.entity_id "
        "WHEN MATCHED AND c.version > t.version THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )
    spark.read.format("delta").load(table).where(F.col("event_date") >= "2023-11-14").groupBy(
        "version"
    ).agg(F.count("*"), F.hll_sketch_agg("entity_id")).collect()
    spark.sql(f"OPTIMIZE delta.`{table}` ZORDER BY (entity_id)").collect()
    spark.sql(f"DESCRIBE HISTORY delta.`{table}`").collect()
    schema = '{"type":"record","name":"e","fields":[{"name":"entity_id","type":"long"}]}'
    spark.range(10).select(F.struct(F.col("id").alias("entity_id")).alias("r")).select(
        from_avro(to_avro("r"), schema).alias("r")
    ).collect()

    def upsert(batch, _batch_id: int) -> None:  # type: ignore[no-untyped-def]
        batch.write.format("delta").mode("append").save(windows)

    query = (
        spark.readStream.format("delta")
        .load(table)
        .withWatermark("event_time", "10 minutes")
        .groupBy(F.window("event_time", "1 minute"), "version")
        .agg(F.count("*").alias("events"), F.hll_sketch_agg("entity_id").alias("sketch"))
        .writeStream.outputMode("update")
        .foreachBatch(upsert)
        .option("checkpointLocation", str(work / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    spark.stop()
    # The JVM writes the archive only when it exits normally; PySpark would kill it.
    gateway = SparkContext._gateway
    process = getattr(gateway, "proc", None)
    with contextlib.suppress(Exception):  # the call never returns: the JVM exits under it
        gateway.jvm.java.lang.System.exit(0)
    if process is not None:
        process.wait(timeout=600)


if __name__ == "__main__":
    raise SystemExit(main())
