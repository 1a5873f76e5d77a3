"""Look at the console pages as a person would: headless Chromium, real graphs.

Debian's Chromium is driven through Debian's chromedriver of the same build
(``settings.monitoring``); Selenium is given both paths, so it never runs
its own manager and never downloads a browser or a driver. A page counts
as drawn when every ``PromConsole.Graph`` on it has finished: it fetched
its range queries from Prometheus and either drew an SVG line or showed
its error text. ``GraphReport`` says which, per panel, with the number of
finite samples the graph received.
"""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

from core.settings import MonitoringSettings

# As root, in a sandbox with a closed network: no sandbox (it needs user
# namespaces), no GPU, and none of the background fetches Chromium would try
# (they fail one by one against the closed network and slow every start).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)

# Runs in the page: the state of every PromConsole.Graph, or null while one is
# still loading. A graph is done when its data rendered or its error showed.
_GRAPH_STATE_JS = """
if (typeof PromConsole === "undefined") { return null; }
var graphs = PromConsole._graph_registry;
var cards = document.querySelectorAll("div.sh-graph");
if (graphs.length < cards.length) { return null; }
var states = [];
for (var i = 0; i < graphs.length; i++) {
  var g = graphs[i];
  var error = g.graphTd.querySelector(".prom_graph_error");
  if (g.rendered_data === null && error === null) { return null; }
  var series = 0, finite = 0;
  (g.rendered_data || []).forEach(function (answer) {
    ((answer && answer.data && answer.data.result) || []).forEach(function (result) {
      series += 1;
      (result.values || []).forEach(function (point) {
        if (isFinite(parseFloat(point[1]))) { finite += 1; }
      });
    });
  });
  var lines = 0;
  g.graphTd.querySelectorAll("svg path").forEach(function (path) {
    var d = path.getAttribute("d") || "";
    if (d.length > 1 && d.indexOf("NaN") < 0) { lines += 1; }
  });
  var spec = JSON.parse(g.params.node.getAttribute("data-spec") || "{}");
  states.push({
    title: spec.title || g.params.node.id,
    drawn: g.rickshawGraph !== null,
    series: series,
    finite_samples: finite,
    svg_lines: lines,
    error: error === null ? null : error.textContent
  });
}
return states;
"""


@dataclass(frozen=True)
class GraphReport:
    """What one panel's graph drew."""

    title: str
    drawn: bool
    series: int
    finite_samples: int
    svg_lines: int
    error: str | None

    @property
    def has_data(self) -> bool:
        """A line with at least one real sample is on the page."""
        return self.drawn and self.finite_samples > 0 and self.svg_lines > 0


@dataclass(frozen=True)
class PageReport:
    """What a console page drew, panel by panel."""

    url: str
    title: str
    graphs: tuple[GraphReport, ...]


class ConsoleBrowser:
    """A headless Chromium session that loads console pages and photographs them."""

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    def load(self, url: str, timeout_s: float = 60.0) -> PageReport:
        """Open ``url`` and wait until every graph on it has finished drawing."""
        self._driver.get(url)
        deadline = time.monotonic() + timeout_s
        while True:
            states = self._driver.execute_script(_GRAPH_STATE_JS)
            if states is not None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the graphs of {url} did not finish within {timeout_s:.0f} s")
            time.sleep(0.25)
        graphs = tuple(GraphReport(**state) for state in states)
        return PageReport(url=url, title=str(self._driver.title), graphs=graphs)

    def screenshot(self, path: Path) -> Path:
        """Save the whole page as a PNG, beyond the window's height (Chrome DevTools)."""
        size = self._driver.execute_script(
            "var e = document.documentElement; return [e.scrollWidth, e.scrollHeight];"
        )
        shot = self._driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
            },
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@contextmanager
def console_browser(monitoring: MonitoringSettings, width: int = 1600) -> Iterator[ConsoleBrowser]:
    """A fresh headless Chromium (new profile, removed afterwards) driven by chromedriver."""
    for path, package in (
        (monitoring.chromium_path, "chromium"),
        (monitoring.chromedriver_path, "chromium-driver"),
    ):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: run `make install` (Debian's {package} package) or set "
                "STREAMHOUSE_MONITORING__CHROMIUM_PATH / __CHROMEDRIVER_PATH."
            )
    with tempfile.TemporaryDirectory(prefix="streamhouse-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(monitoring.chromium_path)
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},1200")
        service = Service(executable_path=str(monitoring.chromedriver_path))
        try:
            driver = webdriver.Chrome(options=options, service=service)
        except WebDriverException as error:
            raise RuntimeError(f"headless Chromium did not start: {error.msg}") from error
        try:
            yield ConsoleBrowser(driver)
        finally:
            driver.quit()
