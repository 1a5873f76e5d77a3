"""Fault switches of the simulator: which response goes wrong, and how (pure).

Each kind has a rate (the probability that one query response carries it)
and can also be queued: ``queue`` forces the next responses' faults in order,
which is what tests use to get each fault exactly once. Schema drift is not a
response fault: it is a revision whose record changed shape
(``producers.simulator.dynamics``), so it stays in the data like a real one.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from core.settings import SimulatorSettings

#: Response faults, in the order their rates are tried. The last three are hostile
#: bodies: one larger than any page, a NaN literal in a record, JSON nested 10,000 deep.
FAULT_KINDS = (
    "rate_limit",
    "unavailable",
    "server_error",
    "slow",
    "truncate",
    "malformed",
    "huge_body",
    "nan",
    "deep_nesting",
)


@dataclass(frozen=True)
class FaultSwitches:
    """Rates and parameters of the response faults, plus forced faults for the next responses."""

    rate_limit_rate: float = 0.0
    retry_after_s: int = 1
    retry_after_as_date: bool = False
    unavailable_rate: float = 0.0
    server_error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 2.0
    truncate_rate: float = 0.0
    malformed_rate: float = 0.0
    huge_body_rate: float = 0.0
    huge_body_mb: int = 200
    nan_rate: float = 0.0
    deep_nesting_rate: float = 0.0
    queue: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_settings(cls, settings: SimulatorSettings) -> FaultSwitches:
        """The switches configured in ``settings.simulator``."""
        names = {f.name for f in fields(cls)} - {"queue"}
        return cls(**{name: getattr(settings, name) for name in names})

    def updated(self, changes: Mapping[str, Any]) -> FaultSwitches:
        """These switches with ``changes`` applied; ``ValueError`` for an unknown name or kind."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault switch {unknown[0]!r}; known: {sorted(known)}")
        values = dict(changes)
        if "queue" in values:
            queue = tuple(str(kind) for kind in values["queue"])
            bad = [kind for kind in queue if kind not in FAULT_KINDS]
            if bad:
                raise ValueError(f"unknown fault {bad[0]!r}; known: {list(FAULT_KINDS)}")
            values["queue"] = queue
        return replace(self, **values)

    def as_json(self) -> dict[str, Any]:
        """The switches as a JSON object (the admin endpoint's answer)."""
        body = asdict(self)
        body["queue"] = list(self.queue)
        return body


def choose_fault(switches: FaultSwitches, rng: random.Random) -> tuple[str | None, FaultSwitches]:
    """The fault of the next response (None: answer normally) and the switches after it."""
    if switches.queue:
        return switches.queue[0], replace(switches, queue=switches.queue[1:])
    for kind in FAULT_KINDS:
        if rng.random() < getattr(switches, f"{kind}_rate"):
            return kind, switches
    return None, switches


def truncate(body: bytes) -> bytes:
    """A body cut in the middle, as a dropped connection behind a proxy leaves it."""
    return body[: max(1, len(body) // 2)]


#: What a misconfigured gateway answers with 200 instead of JSON.
MALFORMED_BODY = b"<html><body><h1>Service temporarily overloaded</h1></body></html>\n"


#: How deep the ``deep_nesting`` body nests (Python's json gives up at about 1,000).
DEEP_NESTING_LEVELS = 10_000


def deeply_nested_body(levels: int = DEEP_NESTING_LEVELS) -> bytes:
    """Valid JSON nested ``levels`` deep: ``[[[...]]]``."""
    return b"[" * levels + b"]" * levels


def with_nan(body: str) -> str:
    """The page with every record's magnitude written as the literal ``NaN`` (not JSON).

    Every record, so that whichever of them is new to the poller (the others
    are re-reads it drops before mapping) carries it.
    """
    page = json.loads(body)
    marker = "__streamhouse_nan__"
    for feature in page.get("features", []):
        feature["properties"]["mag"] = marker
    return json.dumps(page).replace(f'"{marker}"', "NaN")


def huge_body_chunks(megabytes: int, chunk_bytes: int = 1 << 20) -> tuple[int, Iterator[bytes]]:
    """(size, chunks) of a JSON page padded to ``megabytes`` MiB, made as it is sent."""
    head = b'{"type":"FeatureCollection","metadata":{"padding":"'
    tail = b'"},"features":[]}'
    padding = megabytes * (1 << 20)

    def chunks() -> Iterator[bytes]:
        yield head
        left = padding
        block = b"x" * chunk_bytes
        while left > 0:
            yield block[: min(left, chunk_bytes)]
            left -= chunk_bytes
        yield tail

    return len(head) + padding + len(tail), chunks()
