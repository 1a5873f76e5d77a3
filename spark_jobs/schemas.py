"""Avro schemas for the jobs: the reader schema from schemas/, writer schemas from the registry."""

from __future__ import annotations

from functools import lru_cache

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streamhouse.schemas import load_schema_str


def reader_schema(name: str = "quake_change") -> str:
    """The latest schema of an event, as defined in ``schemas/<name>.avsc``."""
    return load_schema_str(f"{name}.avsc")


class WriterSchemas:
    """Writer schemas by id, fetched from the registry once and kept (ids are immutable)."""

    def __init__(self, registry_url: str) -> None:
        self._client = SchemaRegistryClient({"url": registry_url})

    @lru_cache(maxsize=1024)  # noqa: B019 - one instance per job; schemas by id never change
    def get(self, schema_id: int) -> str | None:
        """The schema registered under ``schema_id``, or None when the registry has none."""
        try:
            return str(self._client.get_schema(schema_id).schema_str)
        except SchemaRegistryError as error:
            if error.http_status_code == 404:
                return None
            raise

    def resolve(self, schema_ids: list[int]) -> dict[int, str]:
        """The known writer schemas among ``schema_ids``; unknown ids are left out."""
        found = {i: self.get(i) for i in schema_ids}
        return {i: s for i, s in found.items() if s is not None}
