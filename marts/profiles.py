"""The dbt profile's variables, filled from the platform's settings.

``dbt/profiles.yml`` (in the repository) reads these with ``env_var``; they
hold no secret (the metastore's password is in the private hive-site.xml on
the driver's classpath, ``spark_jobs.session``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from core.settings import PROJECT_ROOT, Settings
from spark_jobs.session import catalog_config, connector_jars

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"


def marts_root(settings: Settings) -> str:
    """Where the marts' Delta tables live: under the lake root, like every table."""
    return f"{settings.lake_uri.rstrip('/')}/marts"


def dbt_work_dir(settings: Settings) -> Path:
    """dbt's target and log folders: under the state directory, not in the repository."""
    return settings.state_dir / "dbt"


def dbt_env(settings: Settings) -> dict[str, str]:
    """The ``STREAMHOUSE_DBT_*`` variables ``dbt/profiles.yml`` and ``dbt_project.yml`` read."""
    catalog = catalog_config(settings)
    return {
        "STREAMHOUSE_DBT_SPARK_MASTER": settings.spark.master,
        "STREAMHOUSE_DBT_SPARK_JARS": ",".join(str(p) for p in connector_jars(settings)),
        "STREAMHOUSE_DBT_DRIVER_CLASSPATH": catalog.get("spark.driver.extraClassPath", ""),
        "STREAMHOUSE_DBT_WAREHOUSE_DIR": settings.warehouse_uri,
        "STREAMHOUSE_DBT_LOCATION_ROOT": marts_root(settings),
    }


def dbt_path_flags(settings: Settings) -> list[str]:
    """dbt's target and log folders, as flags (dbt reads them from there, not the project)."""
    work = dbt_work_dir(settings)
    return ["--target-path", str(work / "target"), "--log-path", str(work / "logs")]


def interval_vars(start: date | None, end: date | None) -> dict[str, str]:
    """dbt vars of the interval [start, end) a build covers; none: the daily run."""
    values = {}
    if start is not None:
        values["start_date"] = start.isoformat()
    if end is not None:
        values["end_date"] = end.isoformat()
    return values
