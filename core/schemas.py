"""Where the event schemas live: ``schemas/*.avsc``, the only definition of each event."""

from __future__ import annotations

from pathlib import Path

from core.settings import PROJECT_ROOT

SCHEMAS_DIR = PROJECT_ROOT / "schemas"


def schema_path(name: str) -> Path:
    """Path of a schema file under ``schemas/`` at the repository root."""
    return SCHEMAS_DIR / name


def load_schema_str(name: str) -> str:
    """Text of the schema file ``name`` (e.g. ``quake_change.avsc``), outer whitespace removed."""
    return schema_path(name).read_text(encoding="utf-8").strip()


def value_subject(topic: str) -> str:
    """Subject of a topic's values under the TopicNameStrategy: ``<topic>-value``."""
    return f"{topic}-value"
