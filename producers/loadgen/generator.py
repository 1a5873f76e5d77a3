"""Synthetic change events: which entity, which version, which event time (pure, seeded).

The generator decides the *shape* of the stream: entity cardinality, and the
shares of duplicates (an ``(entity_id, updated_ms)`` version sent again),
out-of-order versions (an entity's older version sent after a newer one) and
late events (event time far behind the stream's clock). The quake payload of
each event is one of a pool of synthetic quakes made once at start-up, so the
per-event work is a handful of integers; the encoder pre-encodes that pool.

No I/O: the clock is injected, randomness comes from one seeded
``random.Random``, so a fixed seed gives the same stream.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

from producers.mapping import QUAKE_FIELD_ORDER, derive_region

#: Event time of an on-time event trails the clock by up to this much (detection delay).
ON_TIME_JITTER_MS = 5_000
#: How many recently sent versions a duplicate is drawn from.
RECENT_VERSIONS = 4096
#: An out-of-order version is held back for 1..this many events before it is sent.
MAX_HOLD_EVENTS = 16


class EventKind(IntEnum):
    """Why an event was generated; ``OUT_OF_ORDER`` is the older version sent late."""

    NEW_VERSION = 0
    DUPLICATE = 1
    OUT_OF_ORDER = 2
    LATE = 3


class ChangeSpec(NamedTuple):
    """One generated change event, before its quake payload and ``produced_at_ms``."""

    entity_id: str
    updated_ms: int
    event_time_ms: int
    quake_index: int
    kind: EventKind


@dataclass(frozen=True)
class LoadProfile:
    """Shape of the synthetic stream; the shares are fractions of all events sent.

    ``duplicates + late + 2 * out_of_order`` must not exceed 1: an out-of-order
    event needs a newer version of its entity sent before it.
    """

    entities: int = 100_000
    duplicates: float = 0.0
    out_of_order: float = 0.0
    late: float = 0.0
    late_by_ms: int = 3_600_000
    quake_pool: int = 4096
    #: History runs: every version of an entity keeps the event time of its
    #: first one, as a quake keeps its origin time through revisions, and
    #: entities are born over time: a draw makes a new entity with
    #: ``new_entity_share``, else revises one of the ``recent_entities`` born
    #: last. So each day of a history has its own quakes, revised soon after.
    stable_event_time: bool = False
    new_entity_share: float = 0.25
    recent_entities: int = 1000

    def __post_init__(self) -> None:
        if self.entities < 1:
            raise ValueError("entities must be at least 1")
        if self.quake_pool < 1:
            raise ValueError("quake_pool must be at least 1")
        if self.late_by_ms <= ON_TIME_JITTER_MS:
            raise ValueError(f"late_by_ms must exceed the on-time jitter ({ON_TIME_JITTER_MS} ms)")
        for name in ("duplicates", "out_of_order", "late"):
            share = getattr(self, name)
            if not 0.0 <= share < 1.0:
                raise ValueError(f"{name} must be a share in [0, 1), got {share}")
        if self.duplicates + self.late + 2 * self.out_of_order > 1.0:
            raise ValueError("duplicates + late + 2 * out_of_order must not exceed 1")
        if not 0.0 < self.new_entity_share <= 1.0:
            raise ValueError(f"new_entity_share must be in (0, 1], got {self.new_entity_share}")
        if self.recent_entities < 1:
            raise ValueError("recent_entities must be at least 1")


def entity_id(index: int) -> str:
    """Id of synthetic entity ``index``: ``lg`` + 9 digits (a USGS-like network + code)."""
    return f"lg{index:09d}"


class EventGenerator:
    """An endless, seeded stream of ``ChangeSpec``; ``worker`` of ``workers`` owns every
    ``workers``-th entity, so parallel generators never emit versions of the same entity.

    Each draw is one of: a new version of a random entity (``updated_ms`` strictly
    above that entity's newest), a duplicate of a recently sent version, a late
    event (a new version whose event time is ``late_by_ms`` behind), or the start
    of an out-of-order pair (two new versions; the newer is sent now, the older
    is held back and sent a few events later). Draw probabilities are scaled so
    that each kind's share of *sent* events matches the profile.
    """

    def __init__(
        self,
        profile: LoadProfile,
        *,
        seed: int,
        clock_ms: Callable[[], int],
        worker: int = 0,
        workers: int = 1,
    ) -> None:
        if not 0 <= worker < workers:
            raise ValueError(f"worker must be in [0, {workers}), got {worker}")
        owned = len(range(worker, profile.entities, workers))
        if owned == 0:
            raise ValueError(f"{profile.entities} entities cannot be split over {workers} workers")
        self.profile = profile
        self._rng = random.Random(seed * 1_000_003 + worker)
        self._clock_ms = clock_ms
        self._worker = worker
        self._workers = workers
        self._owned = owned
        self._newest: dict[int, int] = {}
        self._event_time: dict[int, int] = {}
        self._born = 0  # entities born so far (history runs)
        self._recent: deque[ChangeSpec] = deque(maxlen=RECENT_VERSIONS)
        # (due at event number, spec), in due order (every hold is 1..MAX_HOLD_EVENTS).
        self._held: deque[tuple[int, ChangeSpec]] = deque()
        self._sent = 0
        # Each out-of-order pair adds one event beyond the draws: rescale so the
        # shares hold over sent events, not over draws.
        pairs = profile.out_of_order / (1.0 - profile.out_of_order)
        scale = 1.0 + pairs
        self._p_duplicate = profile.duplicates * scale
        self._p_pair = self._p_duplicate + pairs
        self._p_late = self._p_pair + profile.late * scale

    def _pick_entity(self) -> tuple[int, str]:
        if not self.profile.stable_event_time:
            slot = self._rng.randrange(self._owned)
        elif self._born == 0 or self._rng.random() < self.profile.new_entity_share:
            slot = self._born % self._owned
            self._born += 1
            # A slot used again (more births than entities) is a new quake: new origin time.
            self._event_time.pop(self._worker + self._workers * slot, None)
        else:
            recent = min(self._born, self.profile.recent_entities, self._owned)
            slot = (self._born - 1 - self._rng.randrange(recent)) % self._owned
        index = self._worker + self._workers * slot
        return index, entity_id(index)

    def _next_version(self, index: int, now_ms: int) -> int:
        version = max(now_ms, self._newest.get(index, 0) + 1)
        self._newest[index] = version
        return version

    def _new(self, kind: EventKind, now_ms: int, behind_ms: int) -> tuple[int, ChangeSpec]:
        index, name = self._pick_entity()
        event_time_ms = now_ms - behind_ms - self._rng.randrange(ON_TIME_JITTER_MS)
        if self.profile.stable_event_time:
            event_time_ms = self._event_time.setdefault(index, event_time_ms)
        spec = ChangeSpec(
            name,
            self._next_version(index, now_ms),
            event_time_ms,
            self._rng.randrange(self.profile.quake_pool),
            kind,
        )
        return index, spec

    def next(self) -> ChangeSpec:
        """The next event to send."""
        self._sent += 1
        if self._held and self._held[0][0] <= self._sent:
            released = self._held.popleft()[1]
            self._recent.append(released)
            return released
        now_ms = self._clock_ms()
        draw = self._rng.random()
        if draw < self._p_duplicate and self._recent:
            original = self._recent[self._rng.randrange(len(self._recent))]
            return original._replace(kind=EventKind.DUPLICATE)
        if draw < self._p_pair:
            index, older = self._new(EventKind.OUT_OF_ORDER, now_ms, 0)
            newer = older._replace(
                updated_ms=self._next_version(index, now_ms),
                quake_index=self._rng.randrange(self.profile.quake_pool),
                kind=EventKind.NEW_VERSION,
            )
            due = self._sent + 1 + self._rng.randrange(MAX_HOLD_EVENTS)
            if self._held and self._held[-1][0] >= due:
                due = self._held[-1][0] + 1
            self._held.append((due, older))
            self._recent.append(newer)
            return newer
        if draw < self._p_late:
            _, spec = self._new(EventKind.LATE, now_ms, self.profile.late_by_ms)
        else:
            _, spec = self._new(EventKind.NEW_VERSION, now_ms, 0)
        self._recent.append(spec)
        return spec


class HistoryClock:
    """The clock of a history run: from ``start_ms`` to ``end_ms`` over ``events`` events.

    Each ``advance`` moves it one event's share of the span, so the events of a
    run spread evenly over the past days; the runner stamps each Kafka record
    with this time too, so the record-level lateness rule (event time against
    the record's timestamp) sees an on-time event as on time.
    """

    def __init__(self, start_ms: int, end_ms: int, events: int) -> None:
        if end_ms <= start_ms:
            raise ValueError("a history ends after it starts")
        if events < 1:
            raise ValueError("a history needs at least one event")
        self._start_ms = start_ms
        self._span_ms = end_ms - start_ms
        self._events = events
        self._done = 0

    def __call__(self) -> int:
        return self._start_ms + self._span_ms * self._done // self._events

    def advance(self) -> None:
        """One event was sent."""
        self._done += 1


_PLACES = (
    "Aguanga, CA",
    "Anza, CA",
    "Petrolia, CA",
    "Cobb, California, USA",
    "Redoubt Volcano, Alaska",
    "Pahala, Hawaii",
    "Tonopah, Nevada",
    "Ridgecrest, CA",
    "Hualien City, Taiwan",
    "Ishinomaki, Japan",
)
_REGIONS = ("South of the Fiji Islands", "Fiji region", "Kermadec Islands region")
_DIRECTIONS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW", "NNE", "WSW")


def synthetic_quakes(count: int, *, seed: int) -> list[dict[str, Any]]:
    """``count`` synthetic ``Quake`` records (the nested record of the schema), seeded.

    Values stay in the ranges USGS publishes (magnitude -1..8, depth -3..700 km,
    status automatic/reviewed, ...), with the optional fields null as often as
    they are in the real feed, so encoded sizes match real events.
    """
    rng = random.Random(seed)
    quakes = []
    for index in range(count):
        net = rng.choice(("ci", "nc", "ak", "hv", "us", "nn"))
        code = f"{rng.randrange(10**8):08d}"
        mag = round(rng.uniform(-1.0, 8.0), 2)
        if rng.random() < 0.1:
            place = rng.choice(_REGIONS)
        else:
            place = f"{rng.randrange(1, 200)} km {rng.choice(_DIRECTIONS)} of {rng.choice(_PLACES)}"
        felt = rng.randrange(1, 500) if rng.random() < 0.1 else None
        quake: dict[str, Any] = {
            "mag": mag,
            "mag_type": rng.choice(("ml", "md", "mb", "mww", "mb_lg")),
            "place": place,
            "longitude": round(rng.uniform(-180.0, 180.0), 4),
            "latitude": round(rng.uniform(-90.0, 90.0), 4),
            "depth_km": round(rng.uniform(-3.0, 700.0), 2),
            "tz_offset_min": rng.choice((-600, -480, -420, 0, 480, 540, None)),
            "url": f"https://earthquake.usgs.gov/earthquakes/eventpage/{net}{code}",
            "detail_url": f"https://earthquake.usgs.gov/fdsnws/event/1/query?eventid={net}{code}",
            "felt": felt,
            "cdi": round(rng.uniform(1.0, 9.0), 1) if felt else None,
            "mmi": round(rng.uniform(1.0, 9.0), 2) if rng.random() < 0.05 else None,
            "alert": rng.choice(("green", "yellow")) if mag > 5.5 else None,
            "status": rng.choice(("automatic", "reviewed")),
            "tsunami": int(mag > 6.5 and rng.random() < 0.5),
            "sig": int(max(0.0, mag) ** 2 * 15) + index % 7,
            "net": net,
            "code": code,
            "ids": f",{net}{code},",
            "sources": f",{net},",
            "types": ",geoserve,nearby-cities,origin,phase-data,",
            "nst": rng.randrange(3, 120) if rng.random() < 0.7 else None,
            "dmin_deg": round(rng.uniform(0.0, 5.0), 5) if rng.random() < 0.8 else None,
            "rms_s": round(rng.uniform(0.0, 1.5), 4),
            "gap_deg": float(rng.randrange(10, 300)) if rng.random() < 0.8 else None,
            "event_type": "earthquake" if rng.random() < 0.97 else "quarry blast",
            "title": f"M {mag:.1f} - {place}",
        }
        quake["region"] = derive_region(place)
        quakes.append({name: quake[name] for name in QUAKE_FIELD_ORDER})
    return quakes


def to_record(
    spec: ChangeSpec,
    quakes: list[dict[str, Any]],
    *,
    produced_at_ms: int,
    source: str,
    run_id: str,
) -> dict[str, Any]:
    """The full ``QuakeChange`` record of ``spec`` (the slow path: tests, samples)."""
    return {
        "entity_id": spec.entity_id,
        "op": "UPSERT",
        "updated_ms": spec.updated_ms,
        "event_time_ms": spec.event_time_ms,
        "source": source,
        "poll_id": run_id,
        "produced_at_ms": produced_at_ms,
        "quake": quakes[spec.quake_index],
    }
