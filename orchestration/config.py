"""The settings as the DAGs and their tasks read them: once per process, from the environment.

The stack starts every Airflow process with the platform's settings as
``STREAMHOUSE_*`` variables (``streamhouse/runtime/airflow.py``), so a DAG
file reads them at parse time without touching a file or a service, and a
task or callback reads the same values when it runs.
"""

from __future__ import annotations

import functools

from core.settings import Settings


@functools.cache
def settings() -> Settings:
    """The platform's settings from this process's environment (no ``.env`` file)."""
    return Settings(_env_file=None)
