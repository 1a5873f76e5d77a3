"""Parse an untrusted JSON body within limits: size, depth, and no non-finite numbers.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON)
and overflows ``1e999`` to infinity; a body nested thousands of levels deep
raises ``RecursionError``. A source page is untrusted input, so every one of
those becomes a ``JsonLimitError`` (the page is dead-lettered) or a
``NonFiniteNumber`` value that the record mapping refuses (the record is
dead-lettered), never an uncaught exception in a long-running poller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class JsonLimitError(ValueError):
    """The body is not JSON within the limits (too deep, not JSON at all)."""


@dataclass(frozen=True)
class NonFiniteNumber:
    """What a ``NaN``/``Infinity`` literal parses to: kept visible, never a float."""

    text: str


def _non_finite(text: str) -> NonFiniteNumber:
    return NonFiniteNumber(text)


def depth_of(value: Any, limit: int) -> int:
    """How deeply ``value`` nests (a scalar is 0), counting no further than ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return deepest


def parse_json(raw: bytes, *, max_depth: int) -> Any:
    """The JSON value of ``raw``; ``JsonLimitError`` past ``max_depth`` or when not JSON.

    ``NaN``/``Infinity`` become ``NonFiniteNumber`` (the mapping refuses them
    per record); ``1e999`` stays an infinite float, which the mapping refuses
    too.
    """
    try:
        value = json.loads(raw, parse_constant=_non_finite)
    except RecursionError:
        raise JsonLimitError(f"body nests deeper than {max_depth} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise JsonLimitError(f"body is not valid JSON: {error}") from error
    if depth_of(value, max_depth) > max_depth:
        raise JsonLimitError(f"body nests deeper than {max_depth} levels")
    return value
