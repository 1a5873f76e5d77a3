"""The console pages' rendering of the dashboards, for the embedded Prometheus.

Prometheus (Debian's 2.42) serves Go templates from ``--web.console.templates``
at ``/consoles/<name>.html`` and draws graphs in the browser with its
``PromConsole.Graph`` library. Each row of a dashboard becomes a page of its
own (``<row slug>.html``) and ``index.html`` links them. A panel is a
``div.sh-graph`` whose ``data-spec`` attribute carries its queries as JSON;
the frame (``prometheus/console_libraries/streamhouse.lib``) draws it.
``read_panels`` parses a page back, so tests compare what a page holds with
what Grafana's JSON holds.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from monitoring.dashboards.model import Dashboard, Panel, Row

INDEX = "index.html"
LIBRARIES_DIR = Path(__file__).resolve().parent.parent / "prometheus" / "console_libraries"
_GO_TEMPLATE = ("{{", "}}")


def _duration_s(time_from: str) -> int:
    """Seconds of a Grafana relative range such as ``now-30m``."""
    amount = time_from.removeprefix("now-")
    factors = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(amount[:-1]) * factors[amount[-1]]


def page_name(row: Row) -> str:
    """The file (and URL path under /consoles/) of a row's page."""
    return f"{row.slug}.html"


def panel_spec(panel: Panel, duration_s: int) -> dict[str, object]:
    """What the page's script needs to draw the panel."""
    return {
        "title": panel.title,
        "exprs": list(panel.exprs),
        "legends": [query.console_legend for query in panel.queries],
        "unit": panel.unit.console_suffix,
        "min": panel.min,
        "max": panel.max,
        "duration_s": duration_s,
    }


def _text(value: str) -> str:
    """Escape literal text of a page: HTML, and Go template delimiters."""
    escaped = html.escape(value, quote=True)
    for delimiter in _GO_TEMPLATE:
        if delimiter in escaped:
            raise ValueError(f"{value!r} holds {delimiter!r}, which Go templates would parse")
    return escaped


def _go_string(value: str) -> str:
    """A Go template string literal (JSON's escapes are Go's)."""
    _text(value)  # refuses template delimiters
    return json.dumps(value)


def _nav(dashboard: Dashboard, current: str) -> str:
    links = [("Overview", INDEX)] + [(row.title, page_name(row)) for row in dashboard.rows]
    current_class = ' class="sh-current"'
    items = "".join(
        f'<a href="{name}"{current_class if name == current else ""}>{_text(title)}</a>'
        for title, name in links
    )
    return (
        '<header class="sh-top"><span class="sh-brand">streamhouse</span>'
        f'{items}{{{{ template "streamhouse_ranges" }}}}</header>'
    )


def _panel_html(panel: Panel, index: int, duration_s: int) -> str:
    spec = _text(json.dumps(panel_spec(panel, duration_s), sort_keys=True))
    pending = (
        f'<p class="sh-pending">No producer yet: {_text(panel.pending)}.</p>'
        if panel.pending
        else ""
    )
    return (
        f'<div class="sh-panel" id="panel-{index}">'
        f"<h2>{_text(panel.title)}</h2>"
        f'<p class="sh-description">{_text(panel.description)} Fed by: {_text(panel.fed_by)}.</p>'
        f"{pending}"
        f'<div class="sh-graph" id="graph-{index}" data-spec="{spec}"></div>'
        "</div>\n"
    )


def render_row(dashboard: Dashboard, row: Row) -> str:
    """The page of one row: its panels as graphs."""
    duration_s = _duration_s(dashboard.time_from)
    panels = "".join(
        _panel_html(panel, index, duration_s) for index, panel in enumerate(row.panels, start=1)
    )
    return (
        f'{{{{ template "streamhouse_head" {_go_string(row.title)} }}}}\n'
        f"{_nav(dashboard, page_name(row))}\n"
        f'<main class="sh-main"><p class="sh-lead">{_text(row.description)}</p>\n'
        f'<section class="sh-grid">\n{panels}</section></main>\n'
        '{{ template "streamhouse_tail" }}\n'
    )


def render_index(dashboard: Dashboard, links: Mapping[str, str]) -> str:
    """The overview: every row's page, the alerts firing now (read when the page loads),
    and links to the other monitoring services."""
    rows = "".join(
        f'<li><a href="{page_name(row)}">{_text(row.title)}</a>: {_text(row.description)} '
        f"({len(row.panels)} panels)</li>"
        for row in dashboard.rows
    )
    services = "".join(
        f'<li><a href="{_text(url)}">{_text(name)}</a></li>' for name, url in links.items()
    )
    firing = (
        '{{ with query `sort(ALERTS{alertstate="firing"})` }}'
        '<table class="sh-alerts"><tr><th>alert</th><th>severity</th><th>labels</th></tr>'
        "{{ range . }}<tr><td>{{ .Labels.alertname }}</td><td>{{ .Labels.severity }}</td>"
        "<td>{{ .Labels }}</td></tr>{{ end }}</table>"
        "{{ else }}<p>No alert is firing.</p>{{ end }}"
    )
    return (
        f'{{{{ template "streamhouse_head" {_go_string(dashboard.title)} }}}}\n'
        f"{_nav(dashboard, INDEX)}\n"
        f'<main class="sh-main"><p class="sh-lead">{_text(dashboard.description)}</p>\n'
        f"<h2>Pages</h2><ul>{rows}</ul>\n"
        f"<h2>Alerts firing now</h2>{firing}\n"
        f"<h2>Elsewhere</h2><ul>{services}</ul></main>\n"
        '{{ template "streamhouse_tail" }}\n'
    )


def render(dashboard: Dashboard, links: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every page of the dashboard, by file name."""
    pages = {page_name(row): render_row(dashboard, row) for row in dashboard.rows}
    pages[INDEX] = render_index(dashboard, links or {})
    return pages


def write(dashboard: Dashboard, directory: Path, links: Mapping[str, str] | None = None) -> None:
    """Write the pages into ``directory`` (Prometheus' ``--web.console.templates``)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in render(dashboard, links).items():
        (directory / name).write_text(text)


@dataclass(frozen=True)
class PagePanel:
    """A panel as a page holds it: title and queries."""

    title: str
    exprs: tuple[str, ...]
    legends: tuple[str, ...]


class _PanelReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.panels: list[PagePanel] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "div" and "sh-graph" in (values.get("class") or "").split():
            spec = json.loads(values.get("data-spec") or "{}")
            self.panels.append(
                PagePanel(str(spec["title"]), tuple(spec["exprs"]), tuple(spec["legends"]))
            )


def read_panels(page: str) -> list[PagePanel]:
    """The panels a page (its template text or the HTML Prometheus served) draws."""
    reader = _PanelReader()
    reader.feed(page)
    return reader.panels
