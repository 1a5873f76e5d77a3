"""The dbt profile's variables, filled from the platform's settings.

``dbt/profiles.yml`` (in the repository) reads these with ``env_var``; they
hold no secret (the metastore's password is in the private hive-site.xml on
the driver's class path, ``spark_jobs.session``).
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from core.errors import UserFacingError
from core.settings import Settings
from spark_jobs.session import (
    catalog_config,
    connector_jars,
    driver_java_options,
    driver_launch_environment,
    master_with_retries,
)


def marts_root(settings: Settings) -> str:
    """Where the marts' Delta tables live: under the lake root, like every table."""
    return f"{settings.lake_uri.rstrip('/')}/marts"


def dbt_work_dir(settings: Settings) -> Path:
    """dbt's target and log folders: under the state directory, not in the repository; one
    per marts schema (the benchmark's own schema keeps its own manifest)."""
    return settings.state_dir / "dbt" / settings.catalog.marts_schema


def dbt_env(settings: Settings) -> dict[str, str]:
    """The ``STREAMHOUSE_DBT_*`` variables ``dbt/profiles.yml`` and ``dbt_project.yml`` read."""
    catalog = catalog_config(settings)
    return {
        # The dbt process's own driver (the session target): the catalog's entries on its
        # class path and the class archive, as every driver of the platform.
        **driver_launch_environment(settings, os.environ),
        "STREAMHOUSE_DBT_DRIVER_JAVA_OPTIONS": driver_java_options(settings),
        "STREAMHOUSE_DBT_SPARK_MASTER": master_with_retries(
            settings.spark.master, settings.spark.task_max_failures
        ),
        "STREAMHOUSE_DBT_SPARK_JARS": ",".join(str(p) for p in connector_jars(settings)),
        "STREAMHOUSE_DBT_CATALOG_IMPLEMENTATION": catalog["spark.sql.catalogImplementation"],
        "STREAMHOUSE_DBT_WAREHOUSE_DIR": settings.warehouse_uri,
        "STREAMHOUSE_DBT_LOCATION_ROOT": marts_root(settings),
        # A Connect client session (SPARK_REMOTE, set by ``connect_session``) has no
        # JVM to configure: dbt's session method then takes the ``connect`` target.
        "STREAMHOUSE_DBT_TARGET": (
            "connect" if os.environ.get("SPARK_REMOTE") else settings.marts.target
        ),
        "STREAMHOUSE_DBT_LAKE_SCHEMA": settings.catalog.lake_schema,
        "STREAMHOUSE_DBT_MARTS_SCHEMA": settings.catalog.marts_schema,
        "STREAMHOUSE_DBT_STAGING_SCHEMA": settings.catalog.staging_schema,
        "STREAMHOUSE_DBT_THREADS": str(settings.marts.threads),
    }


def dbt_path_flags(settings: Settings) -> list[str]:
    """dbt's target and log folders, as flags (dbt reads them from there, not the project)."""
    work = dbt_work_dir(settings)
    return ["--target-path", str(work / "target"), "--log-path", str(work / "logs")]


def interval_vars(
    settings: Settings, start: date | None, end: date | None, today: date
) -> dict[str, Any]:
    """dbt vars of a run over event dates [start, end) and its lookback.

    Always explicit, never left to the project's defaults: dbt keeps a parsed
    project between runs (partial parsing) and re-parses when the vars change,
    so a run on a new day must pass that day. Defaults: the day ``today``
    (UTC) for the start; the day after ``start`` or ``today``, the later, for
    the end.
    """
    first = start or (end - timedelta(days=1) if end is not None else today)
    last = end or max(first, today) + timedelta(days=1)
    if last <= first:
        raise UserFacingError(
            f"--end {last} is not after --start {first}: the interval is [start, end)."
        )
    return {
        "start_date": first.isoformat(),
        "end_date": last.isoformat(),
        "lookback_days": settings.marts.lookback_days,
    }
