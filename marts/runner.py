"""Run dbt commands in this process, on the platform's SparkSession, with progress.

The SparkSession is built first with ``build_spark`` (jars, the shared
metastore, the warehouse), so dbt-spark's session method, whose
``SparkSession.builder.getOrCreate()`` returns the active session, runs every
model in it. With ``marts.target = connect`` the session is a client of the
stack's Spark Connect server instead (``spark_jobs/connect.py``), and so is
dbt's. dbt's events drive a progress bar; a failure becomes one sentence
naming the node.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.environment import temporary_environment
from core.errors import UserFacingError
from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES, QUAKE_WINDOWS_1H, QUAKE_WINDOWS_1M, SILVER_QUAKES
from marts.profiles import dbt_env, dbt_path_flags
from spark_jobs.catalog import qualified_name, register_lake_tables, require_metastore
from spark_jobs.session import build_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The lake tables the marts read (dbt's sources).
SOURCE_TABLES = (BRONZE_QUAKE_CHANGES, SILVER_QUAKES, QUAKE_WINDOWS_1M, QUAKE_WINDOWS_1H)

# dbtRunner keeps global state: two invocations at once in one process corrupt it.
_DBT_LOCK = threading.Lock()
# The last command's outcome, for a caller that shows it after a failure was raised.
_LAST: list[DbtRun] = []


@dataclass
class NodeResult:
    """What one dbt node (model, seed, test, unit test) ended with."""

    name: str
    resource_type: str
    status: str
    message: str
    seconds: float


@dataclass
class DbtRun:
    """The outcome of one dbt command."""

    command: list[str]
    success: bool
    nodes: list[NodeResult] = field(default_factory=list)

    @property
    def failures(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.status in ("error", "fail", "runtime error")]


Progress = Callable[[str, str], None]  # (event, node name)


def local_missing_sources(settings: Settings) -> list[str] | None:
    """The source tables without a Delta log on a local lake; None when the lake is remote
    (only Spark can tell then)."""
    uri = settings.lake_uri
    if "://" in uri and not uri.startswith("file:"):
        return None
    return [
        qualified_name(settings, t)
        for t in SOURCE_TABLES
        if not (Path(t.path(uri).removeprefix("file:")) / "_delta_log").is_dir()
    ]


def _missing_sources_error(settings: Settings, missing: list[str]) -> UserFacingError:
    return UserFacingError(
        f"The marts read {', '.join(missing)}, which does not exist yet at "
        f"{SOURCE_TABLES[0].path(settings.lake_uri).rsplit('/', 2)[0]}: run the "
        "streaming job first (`streamhouse stack up streaming`, or "
        "`streamhouse stream run --available-now`)."
    )


def marts_spark(settings: Settings) -> SparkSession:
    """The session dbt runs in; the lake's tables registered, the marts' sources checked."""
    # On a local lake a missing source is told before a JVM starts (a minute on two cores).
    missing = local_missing_sources(settings)
    if missing:
        raise _missing_sources_error(settings, missing)
    require_metastore(settings)
    if settings.marts.target == "connect":
        from spark_jobs.connect import connect_session

        spark = connect_session(settings, "streamhouse-marts")
    else:
        spark = build_spark(settings, "streamhouse-marts")
    registered = register_lake_tables(spark, settings)
    missing = [
        qualified_name(settings, t)
        for t in SOURCE_TABLES
        if not registered.get(qualified_name(settings, t))
    ]
    if missing:
        raise _missing_sources_error(settings, missing)
    return spark


def run_dbt(
    settings: Settings,
    args: list[str],
    dbt_vars: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> DbtRun:
    """Run ``dbt <args>`` on the project in ``dbt/``; the nodes' results.

    The caller builds the SparkSession (``marts_spark``) first.
    """
    from dbt.cli.main import dbtRunner

    command = [
        *args,
        "--project-dir",
        str(settings.marts.project_dir),
        "--profiles-dir",
        str(settings.marts.project_dir),
        *dbt_path_flags(settings),
    ]
    if dbt_vars:
        command += ["--vars", json.dumps(dbt_vars)]

    def on_event(event: Any) -> None:
        name = event.info.name
        if progress is None or name not in ("NodeStart", "NodeFinished"):
            return
        node = event.data.node_info
        progress(name, f"{node.resource_type} {node.node_name}")

    with _DBT_LOCK, temporary_environment(dbt_env(settings)):
        result = dbtRunner(callbacks=[on_event]).invoke(command)
    run = DbtRun(command, bool(result.success))
    _LAST[:] = [run]
    if result.exception is not None:
        raise UserFacingError(
            f"dbt {' '.join(args)} could not run: {str(result.exception).splitlines()[0]}"
        )
    for item in getattr(result.result, "results", None) or []:
        node = getattr(item, "node", None)
        run.nodes.append(
            NodeResult(
                name=getattr(node, "name", "?"),
                resource_type=str(getattr(node, "resource_type", "?")),
                status=str(item.status),
                message=str(item.message or ""),
                seconds=float(item.execution_time or 0.0),
            )
        )
    return run


def last_run() -> DbtRun | None:
    """The outcome of the last dbt command run in this process, if any."""
    return _LAST[0] if _LAST else None


def require_success(run: DbtRun) -> None:
    """A one-sentence error naming the failed nodes, when there are any."""
    if run.success:
        return
    failed = run.failures
    if failed:
        # dbt's message starts "Runtime Error in model X (path)"; the cause is on the next lines.
        lines = [line.strip() for line in failed[0].message.splitlines() if line.strip()]
        cause = " ".join(lines[:3])[:400]
        names = ", ".join(f"{n.resource_type} {n.name}" for n in failed)
        raise UserFacingError(f"dbt failed on {names} ({cause}); see the log above.")
    raise UserFacingError("dbt failed; see its log above.")
