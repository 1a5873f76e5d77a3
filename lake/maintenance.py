"""Compaction (OPTIMIZE, ZORDER) and clean-up (VACUUM) of Delta tables, measured.

Every streaming micro-batch and every incremental MERGE adds small files;
the daily DAG compacts the partitions of its interval and removes what no
version inside the time-travel window still needs. Each step reports the
files of the partitions it touched, before and after, from Delta's own
metrics.

- OPTIMIZE (bin-packing) rewrites only partitions with more than one small
  file: run again on a compacted partition it commits nothing. Delta streams
  skip its commits (every action has ``dataChange = false``), so bronze's
  readers (silver, the windows, late events) never see a compaction.
- OPTIMIZE ... ZORDER BY rewrites every file of the partitions it selects, on
  every run: it serves tables read by a filter that partitions do not cover
  (the marts), and commits a new version with the same rows each time.
- VACUUM keeps every file a version younger than its retention needs; the
  retention (the table's ``delta.deletedFileRetentionDuration``: Delta 4
  ignores ``RETAIN n HOURS``) is never shorter than the time-travel window
  (``MaintenanceSettings``), so ``VERSION AS OF`` within a day's reruns works.
- VACUUM runs LITE by default: it finds the files to delete in the log's
  ``remove`` actions since the last LITE run instead of listing the table's
  directory (in the daily DAG: 2-5 s a table against about 20 s for a FULL
  run, which lists every file). LITE cannot see files no commit ever
  added (a failed write's leftovers); FULL can, at the cost of the listing.
  Delta refuses LITE (``DELTA_CANNOT_VACUUM_LITE``) when the log was cleaned
  past the last LITE run's mark; a FULL run follows then. A FULL run also
  resets that mark, so on a table whose log no longer starts at version 0,
  every later LITE is refused as well and each run pays for a FULL one
  (warned in the task's log): keep the daily VACUUM on LITE from the start.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: How often an OPTIMIZE that lost a race with a concurrent MERGE is tried again.
CONFLICT_RETRIES = 3


@dataclass(frozen=True)
class CompactionTarget:
    """One table to compact: where it is, which partitions, and how to cluster them."""

    name: str
    path: str
    #: A predicate on partition columns only (Delta refuses others); None: the whole table.
    where: str | None = None
    zorder_by: tuple[str, ...] = ()

    def optimize_sql(self) -> str:
        """The OPTIMIZE statement for this target."""
        sql = f"OPTIMIZE delta.`{self.path}`"
        if self.where:
            sql += f" WHERE {self.where}"
        if self.zorder_by:
            sql += f" ZORDER BY ({', '.join(self.zorder_by)})"
        return sql


@dataclass
class CompactionResult:
    """What compacting one target did, measured."""

    name: str
    where: str | None
    zorder_by: tuple[str, ...]
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    files_added: int
    files_removed: int
    version_before: int
    version_after: int
    seconds: float

    @property
    def committed(self) -> bool:
        return self.version_after != self.version_before


@dataclass
class VacuumResult:
    """What VACUUM deleted from one table."""

    name: str
    retention_hours: int
    files_deleted: int
    table_files: int
    seconds: float
    #: "lite", "full", or "full (lite refused)".
    mode: str = "lite"
    history: list[str] = field(default_factory=list)


def table_version(spark: SparkSession, path: str) -> int:
    """The table's newest version."""
    row = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()
    assert row is not None
    return int(row["version"])


def _scope_files(spark: SparkSession, path: str, where: str | None) -> tuple[int, int]:
    """(files, bytes) of the table's current version within ``where`` (partition columns)."""
    if where is None:
        detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
        assert detail is not None
        return int(detail["numFiles"]), int(detail["sizeInBytes"])
    # Spark's file metadata columns: partition pruning keeps the read to the scope,
    # and no data column is read.
    row = spark.sql(
        f"SELECT count(*) AS files, coalesce(sum(size), 0) AS bytes FROM ("
        f"SELECT _metadata.file_path AS file, max(_metadata.file_size) AS size "
        f"FROM delta.`{path}` WHERE {where} GROUP BY _metadata.file_path)"
    ).first()
    assert row is not None
    return int(row["files"]), int(row["bytes"])


def _metrics(row: Any) -> dict[str, Any]:
    metrics = row["metrics"]
    return metrics.asDict(recursive=True) if metrics is not None else {}


def optimize(spark: SparkSession, target: CompactionTarget) -> CompactionResult:
    """OPTIMIZE the target's partitions; files and bytes of those partitions before and after.

    A compaction that conflicts with a concurrent MERGE (the streaming job's
    on silver) is tried again: it is idempotent, and the stream must win.
    """
    began = time.monotonic()
    version_before = table_version(spark, target.path)
    files_before, bytes_before = _scope_files(spark, target.path, target.where)
    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            row = spark.sql(target.optimize_sql()).first()
            break
        except Exception as error:  # Delta's ConcurrentModificationException, through py4j
            if "Concurrent" not in type(error).__name__ + str(error) or attempt == CONFLICT_RETRIES:
                raise
            log.warning("OPTIMIZE of %s lost a race (%s); again", target.name, error)
            time.sleep(2.0 * attempt)
    metrics = _metrics(row)
    added = int(metrics.get("numFilesAdded") or 0)
    removed = int(metrics.get("numFilesRemoved") or 0)
    added_bytes = int((metrics.get("filesAdded") or {}).get("totalSize") or 0)
    removed_bytes = int((metrics.get("filesRemoved") or {}).get("totalSize") or 0)
    return CompactionResult(
        name=target.name,
        where=target.where,
        zorder_by=target.zorder_by,
        files_before=files_before,
        files_after=files_before - removed + added,
        bytes_before=bytes_before,
        bytes_after=bytes_before - removed_bytes + added_bytes,
        files_added=added,
        files_removed=removed,
        version_before=version_before,
        version_after=table_version(spark, target.path),
        seconds=time.monotonic() - began,
    )


#: Delta's default retention of removed files (``delta.deletedFileRetentionDuration``).
DEFAULT_RETENTION_HOURS = 168
RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"
_INTERVAL = re.compile(r"^\s*interval\s+(\d+)\s+(week|day|hour|minute|second)s?\s*$", re.I)
_UNIT_HOURS = {"week": 168.0, "day": 24.0, "hour": 1.0, "minute": 1 / 60, "second": 1 / 3600}


def retention_hours(value: str | None) -> float:
    """Hours of a Delta interval property (``interval 1 week``); Delta's default when unset."""
    if value is None:
        return float(DEFAULT_RETENTION_HOURS)
    match = _INTERVAL.match(value)
    if match is None:
        raise ValueError(f"not a Delta interval like 'interval 168 hours': {value!r}")
    return int(match.group(1)) * _UNIT_HOURS[match.group(2).lower()]


#: The error class of Delta's refusal of a LITE VACUUM.
LITE_REFUSED = "DELTA_CANNOT_VACUUM_LITE"
VACUUM_MODES = ("lite", "full")


def _run_vacuum(spark: SparkSession, path: str, mode: str, name: str) -> str:
    """``VACUUM`` in ``mode``; a refused LITE run becomes a FULL one. The mode that ran."""
    if mode == "full":
        spark.sql(f"VACUUM delta.`{path}` FULL").collect()
        return "full"
    try:
        spark.sql(f"VACUUM delta.`{path}` LITE").collect()
    except Exception as error:  # py4j's or pyspark's wrapper of DeltaIllegalStateException
        if LITE_REFUSED not in str(error):
            raise
        log.warning(
            "%s: Delta refused a LITE VACUUM (%s: the log no longer holds every removed "
            "file since the last LITE run); running a FULL one, which lists the table",
            name,
            LITE_REFUSED,
        )
        spark.sql(f"VACUUM delta.`{path}` FULL").collect()
        return "full (lite refused)"
    return "lite"


def vacuum(
    spark: SparkSession, name: str, path: str, retention_hours_: int, mode: str = "lite"
) -> VacuumResult:
    """VACUUM the table, keeping files any version younger than ``retention_hours_`` needs.

    Delta 4 ignores ``VACUUM ... RETAIN n HOURS`` (anything but 0; delta-io/delta#5028)
    and keeps removed files for the table's ``delta.deletedFileRetentionDuration``:
    the property is set to the retention first, only when it differs (a metadata
    commit, which a concurrent streaming write would have to retry).
    """
    if mode not in VACUUM_MODES:
        raise ValueError(f"VACUUM mode {mode!r} is not one of {', '.join(VACUUM_MODES)}")
    if retention_hours_ < DEFAULT_RETENTION_HOURS:
        raise ValueError(
            f"a VACUUM retention of {retention_hours_} h is below Delta's 7-day safety window"
        )
    began = time.monotonic()
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    assert detail is not None
    current = (detail["properties"] or {}).get(RETENTION_PROPERTY)
    if retention_hours(current) != retention_hours_:
        spark.sql(
            f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES "
            f"('{RETENTION_PROPERTY}' = 'interval {retention_hours_} hours')"
        )
    before = table_version(spark, path)
    ran = _run_vacuum(spark, path, mode, name)
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").where(f"version > {before}")
    deleted = 0
    lines = []
    for row in history.orderBy("version").collect():
        metrics = row["operationMetrics"] or {}
        if row["operation"] == "VACUUM END":
            deleted += int(metrics.get("numDeletedFiles", 0))
        lines.append(f"v{row['version']} {row['operation']} {dict(sorted(metrics.items()))}")
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    assert detail is not None
    return VacuumResult(
        name=name,
        retention_hours=retention_hours_,
        files_deleted=deleted,
        table_files=int(detail["numFiles"]),
        seconds=time.monotonic() - began,
        mode=ran,
        history=lines,
    )
