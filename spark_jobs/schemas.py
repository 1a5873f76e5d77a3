"""Avro schemas for the jobs: the reader schema from schemas/, writer schemas from the registry."""

from __future__ import annotations

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core.schemas import load_schema_str


def reader_schema(name: str = "quake_change") -> str:
    """The latest schema of an event, as defined in ``schemas/<name>.avsc``."""
    return load_schema_str(f"{name}.avsc")


class WriterSchemas:
    """The writer schemas of a subject, by id; each version is fetched from the registry once."""

    def __init__(self, registry_url: str) -> None:
        self._client = SchemaRegistryClient({"url": registry_url})
        # (subject, version) -> (schema id, schema); a registered version never changes.
        self._versions: dict[tuple[str, int], tuple[int, str]] = {}

    def of_subject(self, subject: str) -> dict[int, str]:
        """Every version of ``subject`` as {schema id: schema}; empty when it has none yet.

        One registry call per use (the version list) plus one per version not
        seen before. A record is produced only after its schema is registered,
        so every id a batch read from Kafka can hold is in the answer, and the
        batch is decoded without first scanning it for the ids it holds.
        """
        try:
            versions = self._client.get_versions(subject)
        except SchemaRegistryError as error:
            if error.http_status_code == 404:
                return {}
            raise
        for version in versions:
            if (subject, version) not in self._versions:
                registered = self._client.get_version(subject, version)
                self._versions[(subject, version)] = (
                    int(registered.schema_id),
                    str(registered.schema.schema_str),
                )
        return {
            schema_id: schema
            for (name, _), (schema_id, schema) in sorted(self._versions.items())
            if name == subject
        }
