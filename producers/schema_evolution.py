"""Schema versions over time: the history under ``schemas/history/`` and registering a new one.

A schema evolves by adding a version file ``schemas/history/<name>/v<N>.avsc``
(the newest equals ``schemas/<name>.avsc``) and registering it under the
topic's subject; the registry refuses a version that breaks the subject's
compatibility level (BACKWARD: a reader on the new version must read data
written with the previous one). The registry's refusal names the broken part
by a JSON pointer into the schema (``/fields/7/type/fields/0/type/1``);
``register_schema_version`` turns it into one sentence that names the field
(``quake.mag``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core.schemas import SCHEMAS_DIR
from producers.errors import PublishError

HISTORY_DIR = SCHEMAS_DIR / "history"

_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")
# Apicurio (ccompat API): "... list of diff types: [<what> at <pointer>, <what> at <pointer>]".
_DIFF = re.compile(r"\s*(?P<what>[^,\[\]]+?) at (?P<pointer>/[^\s,\]]*)")


def schema_history(name: str, history_dir: Path = HISTORY_DIR) -> list[Path]:
    """The version files of schema ``name`` (``quake_change``), oldest first.

    Ordered by the number in ``v<N>.avsc`` (v10 after v9); raises ``ValueError``
    when there is none or the numbers are not 1..N without gaps, because a gap
    would hide a version nobody proved compatible.
    """
    folder = history_dir / name
    numbered = sorted(
        (int(match.group(1)), path)
        for path in folder.glob("v*.avsc")
        if (match := _VERSION_FILE.match(path.name))
    )
    numbers = [number for number, _ in numbered]
    if not numbers or numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"{folder} must hold v1.avsc .. vN.avsc without gaps, found {numbers}")
    return [path for _, path in numbered]


@dataclass(frozen=True)
class IncompatibleDiff:
    """One incompatibility the registry reported: the field it concerns and what broke."""

    field: str | None
    what: str
    pointer: str


def field_at_pointer(schema: Any, pointer: str) -> str | None:
    """Dotted name of the field a JSON pointer into an Avro schema lands in (``quake.mag``).

    Follows the pointer through the parsed schema and keeps the ``name`` of
    every ``fields/<i>`` step; ``None`` when the pointer leaves the schema (it
    may point into the other side of the comparison) or names no field.
    """
    names: list[str] = []
    node = schema
    steps = [step for step in pointer.split("/") if step]
    for index, step in enumerate(steps):
        if isinstance(node, list):
            if not step.isdigit() or int(step) >= len(node):
                return None
            node = node[int(step)]
            if index > 0 and steps[index - 1] == "fields" and isinstance(node, dict):
                names.append(str(node.get("name")))
        elif isinstance(node, dict):
            if step not in node:
                return None
            node = node[step]
        else:
            return None
    return ".".join(names) or None


def incompatible_diffs(schema_str: str, registry_message: str) -> list[IncompatibleDiff]:
    """The incompatibilities a registry refusal lists, each with the field of ``schema_str``."""
    _, found, listed = registry_message.partition("list of diff types:")
    if not found:
        return []
    schema = json.loads(schema_str)
    return [
        IncompatibleDiff(
            field=field_at_pointer(schema, match.group("pointer")),
            what=match.group("what").strip(),
            pointer=match.group("pointer"),
        )
        for match in _DIFF.finditer(listed)
    ]


def _describe(diff: IncompatibleDiff) -> str:
    # Apicurio reports a new field without a default by its bare name only.
    if diff.field and diff.what == diff.field.rsplit(".", 1)[-1]:
        return f"{diff.field} (a new field without a default)"
    return f"{diff.field or diff.pointer} ({diff.what})"


def refusal_sentence(subject: str, schema_str: str, registry_message: str) -> str:
    """One sentence saying which field(s) of ``schema_str`` the registry refused and why."""
    diffs = incompatible_diffs(schema_str, registry_message)
    if not diffs:
        return (
            f"the schema registry refused the new schema of {subject} as incompatible "
            f"with its latest version: {registry_message}"
        )
    described = [_describe(diff) for diff in diffs]
    which = (
        f"field {described[0]} is"
        if len(described) == 1
        else f"fields {', '.join(described[:-1])} and {described[-1]} are"
    )
    return (
        f"the schema registry refused the new schema of {subject}: {which} incompatible "
        "with its latest version; give a new field a default and keep the types of "
        "existing fields (or start a new subject)"
    )


class SchemaIncompatibleError(PublishError):
    """The registry refused a schema version as incompatible; the message names the field."""

    def __init__(self, message: str, *, subject: str, fields: tuple[str, ...]) -> None:
        super().__init__(message)
        self.subject = subject
        self.fields = fields
        self.http_status_code = 409


def register_schema_version(
    client: SchemaRegistryClient,
    subject: str,
    schema: Schema,
    *,
    compatibility: str | None = None,
) -> int:
    """Register ``schema`` as the next version of ``subject`` and return its schema id.

    Sets the subject's compatibility level first when ``compatibility`` is given
    and the subject already exists (the first version has nothing to be
    compatible with). A refusal for incompatibility (HTTP 409) becomes a
    ``SchemaIncompatibleError`` whose message names the field that broke it.
    """
    if compatibility and subject in client.get_subjects():
        client.set_compatibility(subject_name=subject, level=compatibility)
    try:
        schema_id = int(client.register_schema(subject, schema))
    except SchemaRegistryError as error:
        if error.http_status_code != 409:
            raise
        message = str(error.error_message)
        diffs = incompatible_diffs(schema.schema_str, message)
        raise SchemaIncompatibleError(
            refusal_sentence(subject, schema.schema_str, message),
            subject=subject,
            fields=tuple(diff.field for diff in diffs if diff.field),
        ) from error
    if compatibility:
        client.set_compatibility(subject_name=subject, level=compatibility)
    return schema_id
