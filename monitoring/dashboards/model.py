"""What a dashboard is, independent of what draws it.

A ``Dashboard`` holds rows of ``Panel``s; a panel holds PromQL ``Query``s.
Grafana's JSON (``grafana.py``) and the Prometheus console pages
(``consoles.py``) are two renderings of these same objects, so a panel and its
queries are written once (``definitions.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

# Grafana writes legend labels as {{label}}; console pages as [[label]] (Go
# templates own {{ }} there), so the model keeps Grafana's form and each
# renderer converts it.
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class Unit(Enum):
    """A panel's unit: Grafana's unit id and the suffix the console graphs print."""

    SECONDS = ("s", "s")
    PER_SECOND = ("ops", "/s")
    COUNT = ("short", "")
    STATE = ("bool", "")
    RATIO = ("percentunit", "")

    def __init__(self, grafana_id: str, console_suffix: str) -> None:
        self.grafana_id = grafana_id
        self.console_suffix = console_suffix


class Kind(Enum):
    """How Grafana draws a panel; the console pages draw every kind as a graph over time."""

    TIMESERIES = "timeseries"
    # 1 = good, 0 = bad, over time (Grafana: a state timeline with the two states named).
    STATE = "state-timeline"


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and the legend of its series."""

    expr: str
    legend: str

    def __post_init__(self) -> None:
        # Console pages are Go templates: a literal {{ or }} in an expression would
        # be parsed as a template action.
        if "{{" in self.expr or "}}" in self.expr:
            raise ValueError(f"a panel query may not contain '{{{{' or '}}}}': {self.expr}")
        # PromConsole drops the text after a legend's last [[label]]: keep labels last.
        last = list(_LEGEND_LABEL.finditer(self.legend))
        if last and last[-1].end() != len(self.legend):
            raise ValueError(f"legend {self.legend!r}: put the {{{{label}}}} at its end")

    @property
    def console_legend(self) -> str:
        """The legend in the console graphs' [[label]] syntax."""
        return _LEGEND_LABEL.sub(r"[[\1]]", self.legend)


@dataclass(frozen=True)
class Panel:
    """A graph of one or more queries, with what feeds it.

    ``pending`` names the producer that does not exist yet (a batch job of a
    later issue): the panel is there now and shows data once that producer
    writes ``pending_metric``.
    """

    title: str
    description: str
    queries: tuple[Query, ...]
    unit: Unit
    fed_by: str
    kind: Kind = Kind.TIMESERIES
    min: float | None = 0.0
    max: float | None = None
    pending: str | None = None
    pending_metric: str | None = None

    def __post_init__(self) -> None:
        if not self.queries:
            raise ValueError(f"panel {self.title!r} has no query")
        if (self.pending is None) != (self.pending_metric is None):
            raise ValueError(f"panel {self.title!r}: give pending and pending_metric together")

    @property
    def exprs(self) -> tuple[str, ...]:
        """The PromQL of every query, in order."""
        return tuple(query.expr for query in self.queries)


@dataclass(frozen=True)
class Row:
    """A group of panels: a row in Grafana, a page of its own in the consoles."""

    title: str
    slug: str
    description: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    """Rows of panels under one title."""

    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    time_from: str = "now-30m"
    refresh: str = "30s"
    tags: tuple[str, ...] = ("streamhouse",)

    @property
    def panels(self) -> tuple[Panel, ...]:
        """Every panel, row by row."""
        return tuple(panel for row in self.rows for panel in row.panels)

    def __post_init__(self) -> None:
        titles = [panel.title for panel in self.panels]
        duplicated = sorted({title for title in titles if titles.count(title) > 1})
        if duplicated:
            raise ValueError(f"dashboard {self.uid}: panel titles used twice: {duplicated}")
        slugs = [row.slug for row in self.rows]
        if len(set(slugs)) != len(slugs) or "index" in slugs:
            raise ValueError(f"dashboard {self.uid}: row slugs must be unique and not 'index'")
