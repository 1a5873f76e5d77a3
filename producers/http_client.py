"""The HTTP side of a source: one configured client and one GET that returns JSON.

Kept apart from the declarative source so retries, ``Retry-After`` and fault
handling can grow here without touching paging or mapping.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from producers.errors import SourceError
from streamhouse.settings import SourceSettings

USER_AGENT = "streamhouse-poller/0.1"
# How much of an error body goes into the exception: enough for the USGS
# text/plain error (about 400 bytes), not a whole HTML page.
_ERROR_BODY_CHARS = 600


def make_http_client(settings: SourceSettings) -> httpx.Client:
    """An ``httpx.Client`` with the source's connect and read timeouts."""
    timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
    return httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT})


def get_json(client: httpx.Client, url: str, params: Mapping[str, str]) -> Mapping[str, Any]:
    """GET ``url`` with ``params`` and return the JSON object of the body.

    Any failure (connect or read timeout, non-2xx status, a body that is not a
    JSON object, e.g. truncated) raises ``SourceError`` with the status code
    and the start of the body, so the poll fails without moving the cursor.
    """
    try:
        response = client.get(url, params=dict(params))
    except httpx.HTTPError as error:
        raise SourceError(f"GET {url} failed: {error!r}", url=url) from error
    if response.status_code != httpx.codes.OK:
        raise SourceError(
            f"GET {response.url} returned HTTP {response.status_code}: "
            f"{response.text[:_ERROR_BODY_CHARS]}",
            status_code=response.status_code,
            url=str(response.url),
        )
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SourceError(
            f"GET {response.url} returned a body that is not JSON: {error}",
            status_code=response.status_code,
            url=str(response.url),
        ) from error
    if not isinstance(body, Mapping):
        raise SourceError(
            f"GET {response.url} returned JSON that is not an object",
            status_code=response.status_code,
            url=str(response.url),
        )
    return body
