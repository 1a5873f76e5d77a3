"""The files generated from the dashboard and rule definitions, kept in the repository.

docker-compose mounts them (Grafana's provisioned dashboards, Prometheus'
rules), and no generator runs there, so they are committed. A unit test
fails when a committed file differs from what the definitions generate;
``streamhouse dashboard generate`` rewrites them. The console pages are
not among them: the embedded runtime generates those at each start.
"""

from __future__ import annotations

from pathlib import Path

from monitoring.dashboards import grafana, rules
from monitoring.dashboards.definitions import DASHBOARDS

MONITORING_DIR = Path(__file__).resolve().parent.parent
GRAFANA_DASHBOARDS_DIR = MONITORING_DIR / "grafana" / "dashboards"
RECORDING_RULES = MONITORING_DIR / "prometheus" / "rules" / "recording.yml"


def expected_files() -> dict[Path, str]:
    """Every generated file and the text it must hold."""
    files = {
        GRAFANA_DASHBOARDS_DIR / f"{dashboard.uid}.json": grafana.render(dashboard)
        for dashboard in DASHBOARDS
    }
    files[RECORDING_RULES] = rules.rules_yaml()
    return files


def stale_files() -> list[Path]:
    """Generated files that are missing or differ from their definitions."""
    return [
        path
        for path, text in expected_files().items()
        if not path.is_file() or path.read_text() != text
    ]


def write_files() -> list[Path]:
    """Rewrite the generated files that changed; the paths written."""
    written = []
    for path in stale_files():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected_files()[path])
        written.append(path)
    return written
