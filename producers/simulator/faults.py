"""Fault switches of the simulator: which response goes wrong, and how (pure).

Each kind has a rate (the probability that one query response carries it)
and can also be queued: ``queue`` forces the next responses' faults in order,
which is what tests use to get each fault exactly once. Schema drift is not a
response fault: it is a revision whose record changed shape
(``producers.simulator.dynamics``), so it stays in the data like a real one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from core.settings import SimulatorSettings

#: Response faults, in the order their rates are tried.
FAULT_KINDS = ("rate_limit", "unavailable", "server_error", "slow", "truncate", "malformed")


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
