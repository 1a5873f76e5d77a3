"""Registry of the lake's Delta tables: name, location and partitioning.

Every job finds a table here instead of spelling its path, so the lake can
move from a local folder to s3a:// or abfss:// by changing ``lake_root`` only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """One Delta table of the lake."""

    name: str
    layer: str
    partition_by: tuple[str, ...]
    description: str

    def path(self, lake_root: str) -> str:
        """Location of the table under ``lake_root`` (a path or a URI)."""
        return f"{lake_root.rstrip('/')}/{self.layer}/{self.name}"


BRONZE_QUAKE_CHANGES = Table(
    name="quake_changes",
    layer="bronze",
    # Bronze is the durable mirror of the Kafka log: rows land by ingestion time
    # and are never rewritten, so partitions by ingest date stay closed once the
    # day has passed and a replay or a daily job reads only its own days.
    partition_by=("ingest_date",),
    description="Every change event as received, with its Kafka coordinates (append-only).",
)

QUARANTINE_QUAKE_CHANGES = Table(
    name="quake_changes_quarantine",
    layer="quarantine",
    partition_by=("ingest_date",),
    description="Kafka records that could not be decoded, with the reason and the raw bytes.",
)

TABLES = {t.name: t for t in (BRONZE_QUAKE_CHANGES, QUARANTINE_QUAKE_CHANGES)}
