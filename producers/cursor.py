"""The poll cursor: where the next poll starts and which versions it already saw.

Pure and immutable. A durable store (a later step) only has to save and load
``Cursor.updated_ms`` and ``Cursor.seen``.

Why ``seen``: the cursor parameter of a source is inclusive (``updatedafter``
returns versions updated *at or after* it) and may be coarser than the cursor
field (USGS parses it to whole seconds, while ``updated`` has milliseconds).
So the next request starts at ``floor(updated_ms - lookback, resolution)`` and
returns again the versions at the end of the previous poll; ``seen`` holds
exactly the versions inside that re-read window, so they are recognised and
not produced twice, while a version first seen there is not lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: One version of one entity: (primary key, cursor field value in epoch ms).
Version = tuple[str, int]


def window_start_ms(updated_ms: int, *, resolution_ms: int, lookback_ms: int) -> int:
    """Start of the re-read window: ``updated_ms - lookback_ms`` floored to the resolution."""
    start = updated_ms - lookback_ms
    return start - start % resolution_ms


@dataclass(frozen=True)
class Cursor:
    """High-water mark of the cursor field plus the versions seen at or after the window."""

    updated_ms: int | None = None
    seen: frozenset[Version] = field(default_factory=frozenset)

    def request_from_ms(self, *, resolution_ms: int, lookback_ms: int) -> int | None:
        """Value of the cursor parameter for the next request, None for a full first read."""
        if self.updated_ms is None:
            return None
        return window_start_ms(
            self.updated_ms, resolution_ms=resolution_ms, lookback_ms=lookback_ms
        )

    def is_new(self, version: Version) -> bool:
        """True unless this exact version was produced by an earlier poll."""
        return version not in self.seen

    def advance(
        self,
        versions: Iterable[Version],
        *,
        high_water_ms: int | None,
        resolution_ms: int,
        lookback_ms: int,
    ) -> Cursor:
        """The cursor after the given versions were delivered.

        The mark moves to the newest delivered version but never past
        ``high_water_ms`` (the source's own time of the first page, when it has
        one): a version changed while the poll was paging can land on a page
        already read, and capping makes the next poll read it. The mark never
        moves backwards. ``seen`` keeps the versions inside the new re-read window.
        """
        delivered = list(versions)
        newest = max((updated for _, updated in delivered), default=None)
        if newest is not None and high_water_ms is not None:
            newest = min(newest, high_water_ms)
        candidates = [value for value in (self.updated_ms, newest) if value is not None]
        updated_ms = max(candidates) if candidates else None
        if updated_ms is None:
            return self
        start = window_start_ms(updated_ms, resolution_ms=resolution_ms, lookback_ms=lookback_ms)
        seen = frozenset(v for v in (*self.seen, *delivered) if v[1] >= start)
        return Cursor(updated_ms=updated_ms, seen=seen)

    def remember(self, versions: Iterable[Version]) -> Cursor:
        """The cursor after a partial poll: the mark stays, the delivered versions are seen.

        A poll that stopped at an unreadable page has produced versions from
        the pages before it, but cannot know that nothing older is on the pages
        after it; so the next poll starts from the same mark and ``seen`` keeps
        it from producing these versions again (every one of them is at or
        after the current window, since the source returned it for that window).
        """
        return Cursor(updated_ms=self.updated_ms, seen=self.seen | frozenset(versions))
