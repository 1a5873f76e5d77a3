"""The simulator's data changing over time: new events, revisions, deletions, drift.

``ChangeMaker.step`` makes one change to the ``EventStore`` at the simulated
"now" (pure apart from the store and its random generator, so it is tested
step by step); ``Dynamics`` calls it at ``changes_per_s`` from a daemon thread.
Revisions are what USGS does to real events: the magnitude is refined, the
status goes from automatic to reviewed, the location moves. A share of the
revisions drifts: the record gains a field, loses one or changes a type,
the way an API changes under its consumers. A drifted event changes no more
(its next clean version would otherwise carry the drift along).
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from producers.simulator.store import EventStore, EventVersion

DRIFT_KINDS = ("new_field", "removed_field", "changed_type")
#: Network code of the events the simulator invents (ids stay unlike real ones).
SIM_NET = "sx"


@dataclass
class ChangeShares:
    """Relative shares of the kinds of change, and the drift share of revisions."""

    new_event: float = 0.4
    revision: float = 0.5
    deletion: float = 0.1
    drift: float = 0.0


class ChangeMaker:
    """Makes one change at a time to a store, at the simulated clock."""

    def __init__(
        self,
        store: EventStore,
        clock: Callable[[], int],
        *,
        rng: random.Random,
        shares: ChangeShares | None = None,
        min_version_age_ms: int = 0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.rng = rng
        self.shares = shares or ChangeShares()
        self.min_version_age_ms = min_version_age_ms
        self.drifted: dict[tuple[str, int], str] = {}
        self._frozen: set[str] = set()
        self._next_code = 0
        self._lock = threading.Lock()

    def _updated_ms(self, event_id: str | None) -> int:
        now = self.clock()
        if event_id is None:
            return now
        return max(now, self.store.current_version(event_id).updated_ms + 1)

    def _eligible(self) -> list[EventVersion]:
        now = self.clock()
        return [
            v
            for v in self.store.current()
            if not v.deleted
            and v.event_id not in self._frozen
            and now - v.updated_ms >= self.min_version_age_ms
        ]

    def step(self) -> EventVersion:
        """Make one change; returns the version it added."""
        with self._lock:
            shares = self.shares
            kind = self.rng.choices(
                ("new_event", "revision", "deletion"),
                weights=(shares.new_event, shares.revision, shares.deletion),
            )[0]
            eligible = self._eligible() if kind != "new_event" else []
            if not eligible:
                return self._new_event()
            target = self.rng.choice(eligible)
            if kind == "deletion":
                return self.store.delete(target.event_id, self._updated_ms(target.event_id))
            if self.rng.random() < shares.drift:
                return self._drift(target, self.rng.choice(DRIFT_KINDS))
            return self._revise(target)

    def change(
        self, event_id: str, kind: str, properties: dict[str, Any] | None = None
    ) -> EventVersion:
        """Revise ``event_id`` with ``properties``, or delete it, now (an admin endpoint's
        action: a test that needs one known revision or deletion, not a random one)."""
        with self._lock:
            try:
                current = self.store.current_version(event_id)
            except KeyError:
                raise ValueError(f"no event {event_id!r}") from None
            if current.deleted:
                raise ValueError(f"event {event_id!r} is deleted")
            if kind == "deletion":
                return self.store.delete(event_id, self._updated_ms(event_id))
            if kind != "revision" or not properties:
                raise ValueError("kind must be 'revision' (with properties) or 'deletion'")
            if "updated" in properties:
                raise ValueError("properties.updated is set by the simulator")
            return self.store.revise(event_id, self._updated_ms(event_id), properties)

    def drift(self, kind: str) -> EventVersion:
        """Add a drifted version of a random eligible event now (the admin endpoint's action)."""
        if kind not in DRIFT_KINDS:
            raise ValueError(f"unknown drift {kind!r}; known: {list(DRIFT_KINDS)}")
        with self._lock:
            eligible = self._eligible()
            if not eligible:
                raise ValueError("no event can be revised now")
            return self._drift(self.rng.choice(eligible), kind)

    def _new_event(self) -> EventVersion:
        # A drifted event would pass its drift on to the copy, unrecorded.
        templates = [v for v in self.store.current() if v.event_id not in self._frozen]
        if not templates:
            raise ValueError("every event has drifted: none can model a new one")
        template = self.rng.choice(templates).feature
        self._next_code += 1
        code = f"{self._next_code:08d}"
        event_id = SIM_NET + code
        now = self.clock()
        mag = round(self.rng.uniform(1.0, 5.0), 2)
        feature: dict[str, Any] = copy.deepcopy(dict(template))
        properties = feature["properties"]
        properties.update(
            {
                "mag": mag,
                "time": now - self.rng.randint(0, 60_000),
                "updated": self._updated_ms(None),
                "status": "automatic",
                "net": SIM_NET,
                "code": code,
                "ids": f",{event_id},",
                "sources": f",{SIM_NET},",
                "title": f"M {mag} - {properties.get('place')}",
            }
        )
        for link in ("url", "detail"):
            if isinstance(properties.get(link), str):
                properties[link] = properties[link].replace(str(template["id"]), event_id)
        feature["id"] = event_id
        return self.store.add_version(feature)

    def _revise(self, target: EventVersion) -> EventVersion:
        properties = target.feature["properties"]
        change = self.rng.choice(("magnitude", "review", "location"))
        updated = self._updated_ms(target.event_id)
        if change == "review" and properties.get("status") == "automatic":
            return self.store.revise(target.event_id, updated, {"status": "reviewed"})
        if change == "location":
            feature = copy.deepcopy(dict(target.feature))
            lon, lat, *rest = feature["geometry"]["coordinates"]
            feature["geometry"]["coordinates"] = [
                round(max(-180.0, min(180.0, lon + self.rng.uniform(-0.05, 0.05))), 4),
                round(max(-90.0, min(90.0, lat + self.rng.uniform(-0.05, 0.05))), 4),
                *rest,
            ]
            feature["properties"] = {**feature["properties"], "updated": updated}
            return self.store.add_version(feature)
        mag = properties.get("mag")
        new_mag = round(max(0.1, (mag if isinstance(mag, int | float) else 2.0) + 0.1), 2)
        return self.store.revise(target.event_id, updated, {"mag": new_mag})

    def _drift(self, target: EventVersion, kind: str) -> EventVersion:
        feature = copy.deepcopy(dict(target.feature))
        properties = dict(feature["properties"])
        properties["updated"] = self._updated_ms(target.event_id)
        if kind == "new_field":
            properties["magError"] = 0.12
        elif kind == "removed_field":
            del properties["place"]
        else:
            properties["mag"] = str(properties.get("mag"))
        feature["properties"] = properties
        version = self.store.add_version(feature)
        self._frozen.add(target.event_id)
        self.drifted[(version.event_id, version.updated_ms)] = kind
        return version


class Dynamics:
    """Calls ``ChangeMaker.step`` ``changes_per_s`` times a second from a daemon thread."""

    def __init__(self, maker: ChangeMaker, changes_per_s: float) -> None:
        self.maker = maker
        self.changes_per_s = changes_per_s
        self.changes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="simulator-dynamics", daemon=True)

    def start(self) -> Dynamics:
        """Start the thread (it idles while the rate is 0)."""
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            rate = self.changes_per_s
            if rate <= 0:
                self._stop.wait(0.1)
                continue
            if self._stop.wait(self.maker.rng.expovariate(rate)):
                return
            if self.changes_per_s > 0:
                self.maker.step()
                self.changes += 1
