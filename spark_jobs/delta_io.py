"""Delta writes shared by the jobs: idempotent appends, MERGE upserts, table creation.

Each write is safe to repeat: the ingest query appends a batch that follows
the one it has just written as it is, and any other only with the Kafka
positions the table does not hold (``not_held``); appends may instead carry
``txnAppId``/``txnVersion`` (``append_once``: Delta skips an (app, version) it
has committed); upserts are MERGEs whose conditions make a repeated batch a
no-op, and insert-only MERGEs on a key append only the rows not there yet.
That is what turns the checkpoint's at-least-once batch replay into
exactly-once tables.

A skipped append runs no Spark job at all: ``append_once`` tells it by the
table version not moving, so a caller never waits for figures that will not
come (``observed`` bounds every such wait anyway).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from delta.tables import DeltaTable
from pyspark.sql import functions as F  # noqa: N812

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import Column, DataFrame, Observation, SparkSession
    from pyspark.sql.streaming import DataStreamReader

    from core.settings import Settings
    from lake.tables import Table


class ObservationTimeoutError(TimeoutError):
    """A write's observed figures did not arrive in time (the write may not have run)."""


def table_properties(table: Table) -> dict[str, str]:
    """The Delta properties ``table`` is created with.

    Every table keeps a change data feed: silver's feeds downstream increments,
    and each table's ``_commit_timestamp`` measures end-to-end latency exactly.
    Deletion vectors (``Table.deletion_vectors``) let a MERGE mark replaced rows
    instead of rewriting whole files, which is most of a small upsert's cost on
    a big table (compaction rewrites later); tables of a few small files do
    better rewriting them. ``Table.checkpoint_interval`` overrides Delta's
    checkpoint every 10 commits.
    """
    properties = {
        "delta.enableChangeDataFeed": "true",
        "delta.enableDeletionVectors": str(table.deletion_vectors).lower(),
    }
    if table.checkpoint_interval is not None:
        properties["delta.checkpointInterval"] = str(table.checkpoint_interval)
    return properties


def delta_stream(spark: SparkSession, settings: Settings) -> DataStreamReader:
    """``readStream`` of a Delta table, each micro-batch bounded as the settings say."""
    reader = spark.readStream.format("delta")
    if settings.spark.delta_max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", settings.spark.delta_max_files_per_trigger)
    return reader


def table_exists(spark: SparkSession, path: str) -> bool:
    """True when a Delta table lives at ``path``.

    ``DeltaTable.isDeltaTable`` answers from this JVM's cached log when there
    is one: after a lost creation race it still says False, so ``ensure_table``
    asks the log's newest state (``table_version``) once its create failed.
    Over Spark Connect, Delta's Python API needs a server plugin that Maven
    Central does not carry for Delta 4.4 (``delta-connect-server``), so the
    question is asked in SQL there.
    """
    if is_connect(spark):
        from pyspark.errors import AnalysisException

        try:
            spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()
        except AnalysisException:
            return False
        return True
    return bool(DeltaTable.isDeltaTable(spark, path))


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect client session (no JVM in this process)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def ensure_table(spark: SparkSession, table: Table, path: str, like: DataFrame) -> None:
    """Create an empty table at ``path`` with the schema of ``like`` when there is none,
    plus the table's generated columns (Delta fills them on every write)."""
    if table_exists(spark, path):
        return
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(like.schema)
    for name, sql_type, expression in table.generated:
        if name not in like.columns:
            builder = builder.addColumn(name, sql_type, generatedAlwaysAs=expression)
    if table.partition_by:
        builder = builder.partitionedBy(*table.partition_by)
    for key, value in table_properties(table).items():
        builder = builder.property(key, value)
    try:
        builder.execute()
    except Exception as error:
        # Two drivers starting on a fresh lake both create the table: the loser's
        # commit of version 0 fails (ProtocolChangedException, "multiple writers
        # are writing to an empty directory"). The table exists: that is all we want
        # (read from the log's newest state: the cached one still says there is none).
        if table_version(spark, path) >= 0:
            return
        # The other writer may be between the log's folder and its version 0: Delta
        # then refuses the location as not empty. Wait for that commit (the
        # background driver died on this at start, and silver stayed empty).
        if "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION" in str(error) and _created_meanwhile(
            spark, path
        ):
            return
        # A run killed between the log's folder and version 0 left a log without a
        # commit: Delta takes the location for a table and cannot read it
        # (DELTA_TABLE_NOT_FOUND) on every later start. No commit, no table: clear it.
        if "DELTA_TABLE_NOT_FOUND" in str(error) and _clear_uncommitted_log(path):
            builder.execute()
            return
        raise


#: How long a driver that lost the creation race waits for the winner's version 0.
CREATE_RACE_WAIT_S = 30.0


def _created_meanwhile(spark: SparkSession, path: str) -> bool:
    """True once the table at ``path`` has a version 0, looked for up to CREATE_RACE_WAIT_S."""
    deadline = time.monotonic() + CREATE_RACE_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if table_version(spark, path) >= 0:
            return True
    return False


def _clear_uncommitted_log(path: str) -> bool:
    """Remove a local table location's ``_delta_log`` that holds no file at all (True)."""
    parsed = urlparse(path)
    if parsed.scheme not in ("", "file"):
        return False
    log_dir = Path(parsed.path if parsed.scheme else path) / "_delta_log"
    if not log_dir.is_dir() or any(p.is_file() for p in log_dir.rglob("*")):
        return False
    shutil.rmtree(log_dir)
    return True


def table_version(spark: SparkSession, path: str) -> int:
    """The newest committed version of the Delta table at ``path`` (-1 when there is none).

    Reads only the log's newest entries (``DeltaLog.update``), not the table state.
    """
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
    snapshot = log.update(
        getattr(log, "update$default$1")(),
        getattr(log, "update$default$2")(),
        getattr(log, "update$default$3")(),
    )
    return int(snapshot.version())


def observed(observation: Observation, timeout_s: float, what: str) -> dict[str, Any]:
    """The figures ``observation`` gathered, waiting at most ``timeout_s`` for them.

    PySpark's ``Observation.get`` waits forever for an action that may never
    run (a write Delta skipped); this waits with a deadline and says what it
    waited for.
    """
    future = observation._jo.future() if observation._jo is not None else None
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while future is not None and not future.isCompleted():
        if time.monotonic() > deadline:
            raise ObservationTimeoutError(
                f"the observed figures of {what} did not arrive within {timeout_s:.0f} s"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    if future is None:
        raise ObservationTimeoutError(f"{what} observed nothing: it was never executed")
    return dict(observation.get)


def _append_writer(df: DataFrame, table: Table) -> Any:
    """``df.write`` in append mode with the table's partitioning and properties."""
    writer = (
        df.write.format("delta")
        .mode("append")
        # A new optional field in the reader schema (a BACKWARD-compatible
        # version) becomes a new nullable column instead of failing the write.
        .option("mergeSchema", "true")
    )
    if table.partition_by:
        writer = writer.partitionBy(*table.partition_by)
    for key, value in table_properties(table).items():
        writer = writer.option(key, value)
    return writer


def append(df: DataFrame, table: Table, path: str) -> None:
    """Append ``df`` as it is: for rows the caller knows the table does not hold yet.

    No transaction id, so Delta 4.4 does not rebuild the table's state to look
    one up (``append_once``): about two thirds of such an append on these cores
    (``python -m spark_jobs.append_probe``).
    """
    _append_writer(df, table).save(path)


def append_once(df: DataFrame, table: Table, path: str, app_id: str, version: int) -> bool:
    """Append ``df``; a second append with the same (app_id, version) is skipped by Delta.

    Returns False when Delta skipped it as already committed (the table version
    did not move), True when this call committed it.
    """
    spark = df.sparkSession
    before = table_version(spark, path)
    _append_writer(df, table).option("txnAppId", app_id).option("txnVersion", version).save(path)
    return table_version(spark, path) != before


def not_held(
    spark: SparkSession,
    rows: DataFrame,
    path: str,
    key: tuple[str, ...],
    held_since: Column | None = None,
) -> DataFrame:
    """The ``rows`` whose ``key`` (a Kafka position) the table at ``path`` does not hold.

    ``held_since``: a condition every row that could match meets (a partition
    filter), so Delta reads only those partitions. The table is also read from
    the smallest offset among the rows on, for the files whose statistics
    cover the offset.
    """
    if not table_exists(spark, path):
        return rows
    offset = key[-1]
    first = rows.agg(F.min(offset)).first()
    if first is None or first[0] is None:
        return rows
    held = spark.read.format("delta").load(path).where(F.col(offset) >= first[0])
    if held_since is not None:
        held = held.where(held_since)
    return rows.join(held.select(*key), list(key), "left_anti").select(*rows.columns)


def holds_from(
    spark: SparkSession,
    path: str,
    topic: str,
    start: dict[int, int] | None,
    held_since: Column | None = None,
) -> bool:
    """True when the table at ``path`` holds a record of ``topic`` at or after ``start``
    (``{partition: offset}``) in any of its partitions, or any record of it when ``start``
    is None; ``held_since`` as in ``not_held``."""
    if start == {} or not table_exists(spark, path):
        return False
    rows = spark.read.format("delta").load(path).where(F.col("kafka_topic") == topic)
    if held_since is not None:
        rows = rows.where(held_since)
    if start is not None:
        after = [
            (F.col("kafka_partition") == partition) & (F.col("kafka_offset") >= offset)
            for partition, offset in sorted(start.items())
        ]
        condition = after[0]
        for clause in after[1:]:
            condition = condition | clause
        rows = rows.where(condition)
    # isEmpty takes one row, scanning files a few at a time, and stops at the first found.
    return not rows.isEmpty()


def insert_new(
    spark: SparkSession, rows: DataFrame, table: Table, path: str, key: tuple[str, ...]
) -> None:
    """Insert the ``rows`` whose ``key`` the table does not hold yet; never rewrite a row.

    An insert-only MERGE: idempotent by content whatever checkpoint or batch
    id wrote it before, and it commits only added files, so Delta streams
    reading the table take it as an append.
    """
    ensure_table(spark, table, path, rows)
    on = " AND ".join(f"target.{k} <=> source.{k}" for k in key)
    (
        DeltaTable.forPath(spark, path)
        .alias("target")
        .merge(rows.alias("source"), on)
        .whenNotMatchedInsertAll()
        .execute()
    )


def write_if_any(rows: DataFrame, write: Callable[[DataFrame], None]) -> int:
    """Count ``rows`` and ``write`` them unless there are none (no empty commit).

    The rows are cached for the two passes, so a micro-batch's input is read
    and transformed once. Returns the count.
    """
    rows = rows.persist()
    try:
        count = int(rows.count())
        if count:
            write(rows)
        return count
    finally:
        rows.unpersist()


def merge_upsert(
    spark: SparkSession,
    source: DataFrame,
    table: Table,
    path: str,
    key: tuple[str, ...],
    *,
    update_condition: str | None = None,
    target_filter: str | None = None,
) -> None:
    """MERGE ``source`` into the table on ``key``: update matches (when the condition holds),
    insert the rest. Creates the table from ``source``'s schema on first use.

    ``target_filter`` (on ``target.`` columns) bounds the rows the source can
    match, so Delta skips every file whose statistics fall outside it instead
    of scanning the whole table for matches, which is most of a MERGE's cost
    once a table has many files.
    """
    ensure_table(spark, table, path, source)
    on = " AND ".join(f"target.{k} <=> source.{k}" for k in key)
    if target_filter:
        on = f"{on} AND {target_filter}"
    merge = DeltaTable.forPath(spark, path).alias("target").merge(source.alias("source"), on)
    if any(name not in source.columns for name, _, _ in table.generated):
        # UPDATE SET * wants every target column from the source, generated ones
        # included (DELTA_MERGE_UNRESOLVED_EXPRESSION); named, Delta computes them.
        columns = {c: f"source.`{c}`" for c in source.columns}
        merge = merge.whenMatchedUpdate(condition=update_condition, set=columns)
        merge = merge.whenNotMatchedInsert(values=columns)
    else:
        merge = merge.whenMatchedUpdateAll(condition=update_condition).whenNotMatchedInsertAll()
    merge.execute()
