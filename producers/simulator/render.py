"""Response bodies exactly as the USGS service writes them (pure).

GeoJSON: compact JSON, features separated by ``,\\n``, metadata keys in the
service's order, ``bbox`` only when the features span a non-empty box (so not
for zero or one feature). Re-rendering a real response's features and metadata
gives back its bytes (tested against every fixture). Errors: the service's
text/plain layout (``tests/data/usgs/fdsn_error_400_*.txt``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

STATUS_REASONS = {
    204: "No Data",
    400: "Bad Request",
    404: "Not Found",
    409: "Conflict",
    501: "Not Implemented",
    503: "Service Unavailable",
}


def _dumps(value: Any) -> str:
    # The service writes UTF-8 text unescaped and slashes unescaped (json.dumps
    # never escapes "/"), with no spaces.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _php_number(value: float) -> str:
    """A number as PHP prints a float in string context: 19.0 -> ``19``, 3.22 -> ``3.22``."""
    number = float(value)
    # Exponent notation (PHP "1.0E-5") is not reproduced: coordinates never need it.
    return str(int(number)) if number.is_integer() else repr(number)


def query_metadata(
    *,
    generated_ms: int,
    url: str,
    api: str,
    count: int,
    limit: int | None,
    offset: int,
    title: str = "USGS Earthquakes",
) -> dict[str, Any]:
    """The ``metadata`` object of a query response, keys in the service's order.

    ``limit`` and ``offset`` are present only when the request set ``limit``.
    """
    metadata: dict[str, Any] = {
        "generated": generated_ms,
        "url": url,
        "title": title,
        "status": 200,
        "api": api,
    }
    if limit is not None:
        metadata["limit"] = limit
        metadata["offset"] = offset
    metadata["count"] = count
    return metadata


def bounding_box(features: Sequence[Mapping[str, Any]]) -> list[float] | None:
    """[minLon, minLat, minDepth, maxLon, maxLat, maxDepth], None unless min < max on each axis."""
    # A point without depth counts as depth 0, as PHP's floatval(null) does.
    points = [
        [float(c) for c in [*feature["geometry"]["coordinates"], 0.0, 0.0, 0.0][:3]]
        for feature in features
    ]
    if not points:
        return None
    lows = [min(p[axis] for p in points) for axis in range(3)]
    highs = [max(p[axis] for p in points) for axis in range(3)]
    if not all(low < high for low, high in zip(lows, highs, strict=True)):
        return None
    return [*lows, *highs]


def render_feature_collection(
    features: Sequence[Mapping[str, Any]], metadata: Mapping[str, Any]
) -> str:
    """The GeoJSON FeatureCollection text the service sends for these features."""
    parts = [
        '{"type":"FeatureCollection","metadata":',
        _dumps(metadata),
        ',"features":[',
        ",\n".join(_dumps(feature) for feature in features),
        "]",
    ]
    bbox = bounding_box(features)
    if bbox is not None:
        parts.append(',"bbox":[' + ",".join(_php_number(v) for v in bbox) + "]")
    parts.append("}")
    return "".join(parts)


def render_error(
    status: int,
    message: str,
    *,
    request_uri: str,
    usage_url: str,
    submitted_ms: int,
    version: str,
) -> str:
    """The text/plain error body: status line, message, usage URL, request, time, version.

    The echoed request is HTML-escaped (``&amp;``) as the 2026 service does.
    """
    submitted = datetime.fromtimestamp(submitted_ms // 1000, tz=UTC).isoformat()
    lines = [
        f"Error {status}: {STATUS_REASONS.get(status, '')}".rstrip(),
        "",
        message,
        "",
        f"Usage details are available from {usage_url}",
        "",
        "Request:",
        html.escape(request_uri),
        "",
        "Request Submitted:",
        submitted,
        "",
        "Service version:",
        version,
    ]
    return "\n".join(lines) + "\n"
