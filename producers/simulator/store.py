"""The simulator's data: every version of every event, and the simulated clock.

``EventStore`` keeps each event's versions in order of ``updated_ms``; the API
serves the newest version of each event. New versions (revisions, deletions)
can be added while the server runs, which is how the simulator will replay
change over time. Thread-safe: the HTTP server reads from many threads.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: USGS status of a deleted event (see producers.mapping).
DELETED_STATUS = "deleted"


def wall_clock_ms() -> int:
    """Current wall-clock time, epoch milliseconds."""
    return time.time_ns() // 1_000_000


class SimulatedClock:
    """A clock that starts at ``start_ms`` and then runs at wall-clock speed.

    The seed data are real records from a past week; anchoring the simulated
    "now" just after them keeps the service's relative behaviour (default
    30-day window, ``generated``) consistent with the data.
    """

    def __init__(self, start_ms: int, wall_ms: Callable[[], int] = wall_clock_ms) -> None:
        self._start_ms = start_ms
        self._wall_ms = wall_ms
        self._wall_start_ms = wall_ms()

    def __call__(self) -> int:
        """Simulated now, epoch milliseconds."""
        return self._start_ms + self._wall_ms() - self._wall_start_ms


@dataclass(frozen=True)
class EventVersion:
    """One version of one event: the GeoJSON feature exactly as the API serves it."""

    feature: Mapping[str, Any]

    @property
    def event_id(self) -> str:
        """The event id (``feature.id``)."""
        return str(self.feature["id"])

    @property
    def updated_ms(self) -> int:
        """The version: ``properties.updated``."""
        return int(self.feature["properties"]["updated"])

    @property
    def time_ms(self) -> int:
        """Event time: ``properties.time``."""
        return int(self.feature["properties"]["time"])

    @property
    def magnitude(self) -> float | None:
        """``properties.mag``, None when the event has none."""
        mag = self.feature["properties"].get("mag")
        return None if mag is None else float(mag)

    @property
    def deleted(self) -> bool:
        """True when this version marks the event deleted."""
        status = self.feature["properties"].get("status")
        return isinstance(status, str) and status.lower() == DELETED_STATUS


def _validated_copy(feature: Mapping[str, Any]) -> dict[str, Any]:
    """A private deep copy of ``feature`` after checking the fields the store indexes on."""
    if not isinstance(feature.get("id"), str) or not feature["id"]:
        raise ValueError("a feature needs a non-empty string id")
    properties = feature.get("properties")
    if not isinstance(properties, Mapping):
        raise ValueError(f"feature {feature['id']!r} has no properties object")
    for name in ("time", "updated"):
        value = properties.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"feature {feature['id']!r} needs an integer properties.{name}")
    return copy.deepcopy(dict(feature))


class EventStore:
    """All versions of all events the simulated service knows, newest last per event."""

    def __init__(
        self, features: Iterable[Mapping[str, Any]] = (), *, seed_time_ms: int | None = None
    ):
        self._lock = threading.Lock()
        self._versions: dict[str, list[EventVersion]] = {}
        #: ``metadata.generated`` of the seed file: when its data were current.
        self.seed_time_ms = seed_time_ms
        for feature in features:
            self.add_version(feature)

    @classmethod
    def from_geojson(cls, path: Path) -> EventStore:
        """A store seeded with the features of a GeoJSON FeatureCollection file."""
        collection = json.loads(path.read_text(encoding="utf-8"))
        generated = collection.get("metadata", {}).get("generated")
        return cls(
            collection["features"], seed_time_ms=generated if isinstance(generated, int) else None
        )

    def add_version(self, feature: Mapping[str, Any]) -> EventVersion:
        """Add a new version of an event; its ``updated`` must be newer than the current one."""
        version = EventVersion(_validated_copy(feature))
        with self._lock:
            history = self._versions.setdefault(version.event_id, [])
            if history and version.updated_ms <= history[-1].updated_ms:
                raise ValueError(
                    f"event {version.event_id!r}: updated {version.updated_ms} is not newer than "
                    f"the current version's {history[-1].updated_ms}"
                )
            history.append(version)
        return version

    def revise(self, event_id: str, updated_ms: int, properties: Mapping[str, Any]) -> EventVersion:
        """Add a version of ``event_id`` with some properties changed and ``updated`` set."""
        feature = copy.deepcopy(dict(self.current_version(event_id).feature))
        feature["properties"] = {**feature["properties"], **properties, "updated": updated_ms}
        return self.add_version(feature)

    def delete(self, event_id: str, updated_ms: int) -> EventVersion:
        """Add a version of ``event_id`` that marks it deleted (status ``deleted``)."""
        return self.revise(event_id, updated_ms, {"status": DELETED_STATUS})

    def current_version(self, event_id: str) -> EventVersion:
        """The newest version of one event; ``KeyError`` when the store does not know it."""
        with self._lock:
            return self._versions[event_id][-1]

    def current(self) -> list[EventVersion]:
        """The newest version of every event (deleted ones included), in no particular order."""
        with self._lock:
            return [history[-1] for history in self._versions.values()]

    def history(self, event_id: str) -> list[EventVersion]:
        """Every version of one event, oldest first."""
        with self._lock:
            return list(self._versions.get(event_id, ()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._versions)
