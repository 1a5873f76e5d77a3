"""Avro values in the Confluent wire format, keys as plain UTF-8 strings.

The ``.avsc`` files under ``schemas/`` are the only definition of each event;
this module loads them and binds them to the schema registry under the
TopicNameStrategy subject ``<topic>-value``.
"""

from __future__ import annotations

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import StringSerializer

from core.schemas import load_schema_str, schema_path, value_subject
from core.settings import RegistrySettings
from producers.errors import PublishError

__all__ = ["load_schema_str", "schema_path"]


def load_schema(name: str) -> Schema:
    """The ``.avsc`` file ``name`` as a registry ``Schema`` (type AVRO).

    Register and serialize with this one object: AvroSerializer strips a
    schema string before registering it, so registering the file's raw text
    (trailing newline) would be a second, different schema text to a registry
    that compares texts, and could give the serializer a second schema id.
    """
    return Schema(load_schema_str(name), schema_type="AVRO")


def make_registry_client(settings: RegistrySettings) -> SchemaRegistryClient:
    """A schema registry client for ``settings.url`` (``mock://...`` gives the in-memory mock)."""
    return SchemaRegistryClient.new_client(settings.client_config())


def register_value_schema(
    client: SchemaRegistryClient, topic: str, schema: Schema, *, compatibility: str | None
) -> int:
    """Register ``schema`` under ``<topic>-value`` and return its schema id.

    Called once at start-up so a registry that is down or a schema it refuses
    fails the producer before the first poll, not on the first record. The
    subject's compatibility level is set after the registration so it works
    whether or not a registry accepts the config of a subject that does not
    exist yet; the first version has nothing to be compatible with anyway.
    """
    subject = value_subject(topic)
    schema_id = int(client.register_schema(subject, schema))
    if compatibility:
        client.set_compatibility(subject_name=subject, level=compatibility)
    return schema_id


def make_value_serializer(client: SchemaRegistryClient, schema: Schema) -> AvroSerializer:
    """An ``AvroSerializer`` writing the Confluent wire format, subject ``<topic>-value``.

    The subject strategy is set explicitly: in confluent-kafka 2.16 the default
    is the ASSOCIATED strategy, which first asks the registry's
    ``/associations`` API and falls back to the topic name only on a 404; a
    registry answering that unknown path with another status fails every record.
    """
    serializer: AvroSerializer = AvroSerializer(
        client,
        schema,
        conf={"auto.register.schemas": True, "subject.name.strategy.type": "TOPIC"},
    )
    return serializer


def make_key_serializer() -> StringSerializer:
    """Keys are the entity id as plain UTF-8 bytes (no schema, no wire-format prefix)."""
    return StringSerializer("utf_8")


def build_value_serializer(
    settings: RegistrySettings, topic: str, schema_name: str
) -> tuple[AvroSerializer, int]:
    """The value serializer of ``topic`` for ``schema_name``, registered up front.

    Loads ``schemas/<schema_name>``, connects to ``settings.url``, registers the
    schema under ``<topic>-value`` with ``settings.compatibility`` and returns
    the serializer with the schema id. Raises ``PublishError`` (one sentence
    naming the registry) when the registry is unreachable or refuses the schema.
    """
    client = make_registry_client(settings)
    schema = load_schema(schema_name)
    try:
        schema_id = register_value_schema(
            client, topic, schema, compatibility=settings.compatibility
        )
    except Exception as error:
        # Connection errors surface from the registry client's HTTP library; one
        # exception type lets the entry point print one clear sentence.
        raise PublishError(
            f"cannot register {schema_name} under {value_subject(topic)} with the schema "
            f"registry at {settings.url}: {error}"
        ) from error
    return make_value_serializer(client, schema), schema_id
