"""Proof with Delta time travel that a job's commits changed no row.

A rerun of an idempotent job commits versions (a MERGE that matches every row
rewrites them with equal values, an OPTIMIZE rewrites files), and the proof is
that each of those versions holds exactly the rows of the version before it:
``VERSION AS OF`` both, ``EXCEPT ALL`` both ways (duplicates count), both
empty. A job's commits are told apart from the streaming job's by the
``userMetadata`` it sets on its Spark session (``commit_marker``), so the
proof holds on a lake the stream keeps writing. It also checks that the
table holds each key once (row count = distinct keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The Spark setting whose value Delta records as each commit's ``userMetadata``.
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


def commit_marker(dag_id: str, run_id: str) -> str:
    """The ``userMetadata`` of every commit a DAG run makes (same for all its tries)."""
    return f"airflow:{dag_id}:{run_id}"


@dataclass(frozen=True)
class Commit:
    """One line of a table's Delta history."""

    version: int
    operation: str
    user_metadata: str | None
    metrics: dict[str, str]
    #: When it committed (unix milliseconds).
    committed_ms: int = 0

    def line(self) -> str:
        shown = ", ".join(
            f"{key}={self.metrics[key]}"
            for key in (
                "numOutputRows",
                "numTargetRowsInserted",
                "numTargetRowsUpdated",
                "numTargetRowsDeleted",
                "numTargetRowsCopied",
                "numAddedFiles",
                "numRemovedFiles",
                "numDeletedFiles",
            )
            if key in self.metrics
        )
        return f"v{self.version} {self.operation} {shown}".rstrip()


@dataclass
class TableProof:
    """One table across the versions a job committed."""

    name: str
    version_before: int
    version_after: int
    #: The job's commits after ``version_before``; others (the stream's) are not its doing.
    commits: list[Commit] = field(default_factory=list)
    #: (version, rows only in the version before it, rows only in it), per commit of the job.
    differences: list[tuple[int, int, int]] = field(default_factory=list)
    rows: int = 0
    distinct_keys: int = 0

    @property
    def unchanged(self) -> bool:
        return all(old == 0 and new == 0 for _, old, new in self.differences)

    @property
    def keys_unique(self) -> bool:
        return self.rows == self.distinct_keys


def history(spark: SparkSession, path: str, after_version: int = -1) -> list[Commit]:
    """The table's commits after ``after_version``, oldest first."""
    rows = (
        spark.sql(f"DESCRIBE HISTORY delta.`{path}`")
        .where(f"version > {after_version}")
        .selectExpr("*", "unix_millis(timestamp) AS committed_ms")
        .orderBy("version")
        .collect()
    )
    return [
        Commit(
            version=int(row["version"]),
            operation=str(row["operation"]),
            user_metadata=row["userMetadata"],
            metrics=dict(row["operationMetrics"] or {}),
            committed_ms=int(row["committed_ms"]),
        )
        for row in rows
    ]


def latest_version(spark: SparkSession, path: str) -> int:
    """The table's newest version."""
    row = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()
    assert row is not None
    return int(row["version"])


def except_all(
    spark: SparkSession, path: str, left: int, right: int, where: str | None = None
) -> int:
    """Rows of version ``left`` that version ``right`` lacks, duplicates counted."""
    condition = f" WHERE {where}" if where else ""
    return int(
        spark.sql(
            f"SELECT * FROM delta.`{path}` VERSION AS OF {left}{condition} "
            f"EXCEPT ALL SELECT * FROM delta.`{path}` VERSION AS OF {right}{condition}"
        ).count()
    )


def key_counts(
    spark: SparkSession, path: str, keys: tuple[str, ...], where: str | None = None
) -> tuple[int, int]:
    """(rows, distinct keys) of the table's newest version within ``where``."""
    condition = f" WHERE {where}" if where else ""
    columns = ", ".join(keys)
    row = spark.sql(
        f"SELECT count(*) AS rows, count(DISTINCT {columns}) AS keys FROM delta.`{path}`{condition}"
    ).first()
    assert row is not None
    return int(row["rows"]), int(row["keys"])


def prove_unchanged(
    spark: SparkSession,
    name: str,
    path: str,
    keys: tuple[str, ...],
    version_before: int,
    *,
    marker: str,
    where: str | None = None,
) -> TableProof:
    """Every commit ``marker`` made after ``version_before``, compared with the version before it.

    Only commits that change data are compared row by row (VACUUM's commits
    hold no rows). ``where`` limits the comparison to the rows the job was
    about (its interval's partitions of a big table).
    """
    commits = [c for c in history(spark, path, version_before) if c.user_metadata == marker]
    proof = TableProof(name, version_before, latest_version(spark, path), commits)
    for commit in commits:
        if commit.operation.startswith("VACUUM"):
            continue
        previous = commit.version - 1
        proof.differences.append(
            (
                commit.version,
                except_all(spark, path, previous, commit.version, where),
                except_all(spark, path, commit.version, previous, where),
            )
        )
    proof.rows, proof.distinct_keys = key_counts(spark, path, keys, where)
    return proof
