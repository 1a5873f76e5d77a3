"""The poller's circuit breaker: after repeated failed polls, stop asking for a while (pure).

Retries inside one request (``http_client``) handle a blip; the breaker
handles an outage: once ``failures_to_open`` polls in a row have failed, the
poller pauses for ``open_s``, doubling with every further failure up to
``open_max_s``. The first poll after a pause is the trial: success closes the
breaker, failure opens it again for longer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CircuitBreaker:
    """Counts consecutive failed polls and says how long to pause."""

    failures_to_open: int
    open_s: float
    open_max_s: float
    consecutive_failures: int = 0

    def record_success(self) -> bool:
        """A poll succeeded; returns True when this closed an open breaker."""
        was_open = self.is_open
        self.consecutive_failures = 0
        return was_open

    def record_failure(self) -> float | None:
        """A poll failed; returns the pause in seconds when the breaker is (still) open."""
        self.consecutive_failures += 1
        if not self.is_open:
            return None
        doublings = self.consecutive_failures - self.failures_to_open
        return float(min(self.open_max_s, self.open_s * 2.0 ** min(doublings, 30)))

    @property
    def is_open(self) -> bool:
        """True once ``failures_to_open`` polls in a row have failed."""
        return self.consecutive_failures >= self.failures_to_open
