"""Run Python in a fresh interpreter with an Airflow of its own: an empty AIRFLOW_HOME, no
examples, none of the caller's AIRFLOW_* or STREAMHOUSE_AIRFLOW_* settings (no metadata
database, no stack)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.settings import PROJECT_ROOT


def run_isolated(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """``python <args>`` with ``home`` as AIRFLOW_HOME, from the project root."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STREAMHOUSE_AIRFLOW"))
    }
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
