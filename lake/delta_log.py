"""A Delta table's newest commits and the newest value of a column, read without Spark.

The daily DAG's sensor asks, every few minutes, how far bronze has got; a JVM
for each look would cost more than the answer. Bronze is append-only and
each commit of the ingest query adds the files of one micro-batch, so its
newest rows are in the files its newest commits added: this module reads the
log's newest JSON commits (no checkpoint, no table state) and one column of
those files with pyarrow. Statistics in the log do not help: Delta collects
them for the first 32 columns only, and Spark writes timestamps as INT96,
which carry no Parquet statistics.

The answer is a lower bound of the column's maximum over the whole table (a
file added by an older commit could hold a larger value), which is what a
sensor needs: it may wait longer than necessary, never too little.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

_COMMIT = re.compile(r"^(\d{20})\.json$")


class DeltaLogError(RuntimeError):
    """The table's log cannot be read (no table there, or a storage error)."""


@dataclass(frozen=True)
class AddedFile:
    """A data file a commit added."""

    path: str
    partition_values: dict[str, str | None]
    data_change: bool


def added_files(commit_lines: Iterable[str]) -> list[AddedFile]:
    """The files one commit (its JSON lines) added, in the order it lists them."""
    files = []
    for line in commit_lines:
        if not line.strip():
            continue
        action = json.loads(line)
        add = action.get("add")
        if add is not None:
            files.append(
                AddedFile(
                    path=add["path"],
                    partition_values=dict(add.get("partitionValues") or {}),
                    data_change=bool(add.get("dataChange", True)),
                )
            )
    return files


def commit_versions(names: Iterable[str]) -> list[int]:
    """The commit versions among the log folder's file names, newest first."""
    return sorted(
        (int(match.group(1)) for name in names if (match := _COMMIT.match(name))), reverse=True
    )


def file_location(table_path: str, file_path: str) -> str:
    """Where an added file is: its path is relative to the table and URL-encoded (or absolute)."""
    if "://" in file_path:
        return file_path
    return f"{table_path.rstrip('/')}/{unquote(file_path)}"


def filesystem(uri: str) -> tuple[FileSystem, str]:
    """pyarrow's file system for a lake URI or path, and the path within it.

    ``s3a://`` is Hadoop's name for S3; pyarrow knows it as ``s3://``.
    """
    from pyarrow import fs

    if "://" not in uri:
        return fs.LocalFileSystem(), uri
    scheme, rest = uri.split("://", 1)
    if scheme == "file":
        return fs.LocalFileSystem(), "/" + rest.lstrip("/")
    if scheme == "s3a":
        scheme = "s3"
    try:
        filesystem_, path = fs.FileSystem.from_uri(f"{scheme}://{rest}")
    except (ValueError, OSError) as error:
        raise DeltaLogError(f"pyarrow cannot open {uri}: {error}") from error
    return filesystem_, str(path)


def newest_data_files(table_path: str, max_commits: int = 20) -> list[str]:
    """Files holding new rows that the newest ``max_commits`` commits added (their locations).

    Files a compaction wrote (``dataChange`` false) hold old rows and are left
    out. Empty when the newest commits added no rows.
    """
    from pyarrow import fs as pafs

    filesystem_, root = filesystem(table_path)
    log_dir = f"{root.rstrip('/')}/_delta_log"
    try:
        entries = filesystem_.get_file_info(pafs.FileSelector(log_dir, allow_not_found=False))
    except (FileNotFoundError, OSError) as error:
        raise DeltaLogError(f"no Delta table at {table_path} ({error})") from error
    versions = commit_versions(entry.base_name for entry in entries)[:max_commits]
    located: list[str] = []
    for version in versions:
        with filesystem_.open_input_stream(f"{log_dir}/{version:020d}.json") as stream:
            lines = stream.read().decode().splitlines()
        located.extend(
            file_location(root, added.path) for added in added_files(lines) if added.data_change
        )
    return located


def newest_value(table_path: str, column: str, max_commits: int = 20) -> datetime | None:
    """The largest value of a timestamp ``column`` in the newest commits' new files (UTC).

    None when those commits added no rows. A file deleted since (VACUUM) is
    skipped: its rows were compacted into a file an older version of the log
    added, so this stays a lower bound.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    filesystem_, _ = filesystem(table_path)
    newest: datetime | None = None
    for location in newest_data_files(table_path, max_commits):
        _, path = filesystem(location)
        try:
            values = pq.read_table(path, columns=[column], filesystem=filesystem_).column(column)
        except FileNotFoundError:
            continue
        largest = pc.max(values).as_py()
        if largest is None:
            continue
        if largest.tzinfo is None:  # Spark's INT96 timestamps are UTC instants
            largest = largest.replace(tzinfo=UTC)
        newest = largest if newest is None else max(newest, largest)
    return newest
