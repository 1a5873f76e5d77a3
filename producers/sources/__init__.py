"""Declarative HTTP sources (dlt verified-source style): one module per source.

``base`` holds the description type and the shared pure logic (paging
parameters, record extraction, versions); each source module only configures it.
"""

from producers.sources.base import FetchResult, HttpSource, OffsetPaging
from producers.sources.usgs import usgs_earthquakes

__all__ = ["FetchResult", "HttpSource", "OffsetPaging", "usgs_earthquakes"]
