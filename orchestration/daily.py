"""What each task of ``lakehouse_daily`` does, apart from Airflow: plain functions of the
settings, the interval and a SparkSession, so a test or a command can run them too.

Every step is idempotent over its interval: OPTIMIZE of compacted partitions
commits nothing, ZORDER rewrites the same rows, dbt MERGEs the interval on
the marts' unique keys, validations only read. Every commit a run makes
carries the run's marker as Delta ``userMetadata`` (``lake.time_travel``),
so the rerun proof can tell its versions from the streaming job's.
"""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from core.errors import UserFacingError
from core.intervals import Interval
from core.settings import Settings
from lake.maintenance import CompactionTarget, optimize, vacuum
from lake.tables import BRONZE_QUAKE_CHANGES, SILVER_QUAKES
from lake.time_travel import USER_METADATA_CONF
from marts.profiles import dbt_work_dir, marts_root

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import SparkSession

    from marts.runner import DbtRun

log = logging.getLogger(__name__)

#: The incremental marts (MERGE on their keys) and the columns each is Z-ordered by: the
#: filters their queries use (dbt/README.md; a test keeps these equal to the models'
#: post-hooks). Partitioned by event date, so the interval's partitions are the ones compacted.
ZORDERED_MARTS = {
    "fct_quake_revisions": ("event_date", ("quake_id",)),
    "fct_quakes": ("event_date", ("network_code", "fe_region_number")),
}
#: Small and unpartitioned: bin-packed whole.
SMALL_MARTS = ("fct_network_activity_daily",)
INCREMENTAL_MARTS = ("fct_quake_revisions", "fct_quakes", "fct_network_activity_daily")
SEEDS = ("usgs_magnitude_types", "usgs_networks", "fe_regions", "fe_region_cells")


def task_spark(
    settings: Settings, app_name: str, marker: str, catalog: bool = False, remote: bool = True
) -> SparkSession:
    """The task's SparkSession, its Delta commits marked with ``marker``.

    With ``spark.tasks_on_connect`` (and ``remote``), a client session on the
    stack's Spark Connect server (``spark_jobs/connect.py``): the marker is a
    setting of that session only. Otherwise a driver of the task's own.
    Tables are read and written by path; ``catalog``: the task also reads the
    shared catalog (dbt), so the lake's tables are registered in it first.
    A session that never touches the catalog never connects to the metastore.
    """
    from spark_jobs.catalog import register_lake_tables
    from spark_jobs.connect import connect_session
    from spark_jobs.session import build_spark, spark_log_file

    if remote and settings.spark.tasks_on_connect:
        spark = connect_session(settings, app_name)
    else:
        spark = build_spark(settings, app_name, spark_log_file(settings, app_name))
    spark.conf.set(USER_METADATA_CONF, marker)
    if catalog and settings.catalog.kind == "hive":
        register_lake_tables(spark, settings)
    return spark


# -- compaction ----------------------------------------------------------------------


def bronze_partitions(spark: SparkSession, settings: Settings, interval: Interval) -> list[date]:
    """The ingestion dates whose partitions hold the interval's events.

    Bronze is partitioned by ingestion date, the interval is in event time:
    normally the interval's own day and the next (late arrivals); after a
    replay or a backfill, the days the events were ingested.
    """
    from pyspark.sql import functions as F  # noqa: N812

    rows = (
        spark.read.format("delta")
        .load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
        .where(
            (F.col("event_time_ms") >= interval.start_ms)
            & (F.col("event_time_ms") < interval.end_ms)
        )
        .select("ingest_date")
        .distinct()
        .collect()
    )
    return sorted(row["ingest_date"] for row in rows)


def _dates_in(column: str, dates: list[date]) -> str:
    return f"{column} IN ({', '.join(repr(d.isoformat()) for d in dates)})"


def compaction_targets(
    settings: Settings, interval: Interval, bronze_dates: list[date]
) -> list[CompactionTarget]:
    """What the daily run compacts, and how.

    Bronze's partitions holding the interval and silver are bin-packed: files
    of a partition are already clustered by arrival, which follows event
    time, and Delta streams skip the rewrite. The Z-ordered marts are
    rewritten over the interval the dbt run merged (with its lookback).
    """
    lake = settings.lake_uri
    targets = []
    if bronze_dates:
        targets.append(
            CompactionTarget(
                "lake.quake_changes",
                BRONZE_QUAKE_CHANGES.path(lake),
                _dates_in("ingest_date", bronze_dates),
            )
        )
    targets.append(CompactionTarget("lake.quakes", SILVER_QUAKES.path(lake)))
    root = marts_root(settings)
    start, end = interval.start_date, interval.end_date
    for name, (column, zorder) in ZORDERED_MARTS.items():
        targets.append(
            CompactionTarget(
                f"marts.{name}",
                f"{root}/{name}",
                f"{column} >= '{start.isoformat()}' AND {column} < '{end.isoformat()}'",
                zorder,
            )
        )
    targets += [CompactionTarget(f"marts.{name}", f"{root}/{name}") for name in SMALL_MARTS]
    return targets


def compact(spark: SparkSession, settings: Settings, interval: Interval) -> dict[str, Any]:
    """OPTIMIZE the interval's partitions, then VACUUM, table by table; the measurements.

    Tables are independent, so ``maintenance.parallel_tables`` of them are
    compacted at once (threads sharing the session: on a warm driver most of a
    small table's OPTIMIZE and VACUUM is waiting on the log and the file
    listing, not the cores). Each table is vacuumed after its own OPTIMIZE.
    """
    targets = compaction_targets(settings, interval, bronze_partitions(spark, settings, interval))
    retention = settings.maintenance.vacuum_retention_hours

    def one_table(target: CompactionTarget) -> tuple[dict[str, Any], dict[str, Any]]:
        result = optimize(spark, target)
        log.info(
            "%s %s: files %d -> %d (%d added, %d removed) in %.1f s",
            target.name,
            target.where or "(whole table)",
            result.files_before,
            result.files_after,
            result.files_added,
            result.files_removed,
            result.seconds,
        )
        cleaned = vacuum(
            spark, target.name, target.path, retention, settings.maintenance.vacuum_mode
        )
        log.info(
            "%s: VACUUM %s deleted %d files in %.1f s",
            target.name,
            cleaned.mode.upper(),
            cleaned.files_deleted,
            cleaned.seconds,
        )
        return asdict(result), asdict(cleaned)

    with ThreadPoolExecutor(max_workers=settings.maintenance.parallel_tables) as pool:
        done = list(pool.map(one_table, targets))
    return {"optimize": [o for o, _ in done], "vacuum": [v for _, v in done]}


# -- marts ---------------------------------------------------------------------------


def _dbt(settings: Settings, args: list[str], window: dict[str, Any]) -> DbtRun:
    from marts.runner import require_success, run_dbt

    run = run_dbt(settings, args, window, _progress(args[0]))
    require_success(run)
    return run


def _window(settings: Settings, interval: Interval) -> dict[str, Any]:
    from marts.profiles import interval_vars

    return interval_vars(settings, interval.start_date, interval.end_date, interval.start_date)


def _progress(command: str) -> Callable[[str, str], None]:
    def progress(event: str, node: str) -> None:
        if event == "NodeFinished":
            log.info("dbt %s: %s done", command, node)

    return progress


def _step(command: str) -> Callable[[str, str], None]:
    """The build's own steps in the task's log: the revised ranges it looked up, the seeds
    it loads, the static marts it leaves out (what ``marts build`` prints)."""

    def step(_event: str, message: str) -> None:
        log.info("marts %s: %s", command, message)

    return step


def build_marts(spark: SparkSession, settings: Settings, interval: Interval) -> dict[str, Any]:
    """``dbt build`` of the interval (models and data tests), as ``marts build`` runs it.

    ``marts.build`` loads only the seeds whose CSV changed and leaves dbt's unit tests
    out (``marts.unit_tests_in_build``: static inputs, run in CI). Returns when the build
    started (the marts' validation leaves out rows changed since) and the
    nodes' outcome.
    """
    from marts.build import build

    started = datetime.now(UTC)
    result = build(
        spark,
        settings,
        _window(settings, interval),
        progress=_progress("build"),
        on_step=_step("build"),
    )
    counts: dict[str, int] = {}
    for run in result.runs:
        for node in run.nodes:
            counts[node.status] = counts.get(node.status, 0) + 1
    built = datetime.now(UTC)
    # The docs are generated here, in the build's session, for what the build left:
    # ``dbt docs generate`` reads the catalog through a SparkSession, and a task of its
    # own would pay a JVM start (about 20 s) for the 5 s it needs. With the build's vars,
    # dbt reuses the project the build parsed (partial parsing; other vars re-parse it).
    _dbt(settings, ["docs", "generate", "--static"], result.window)
    return {
        "build_started": started.isoformat(),
        "seeded": bool(result.seeds_loaded),
        "nodes": counts,
        "seconds": round((built - started).total_seconds(), 1),
        "docs_seconds": round((datetime.now(UTC) - built).total_seconds(), 1),
    }


def _exclude(*resource_types: str) -> list[str]:
    return [arg for kind in resource_types for arg in ("--exclude-resource-type", kind)]


# -- docs ----------------------------------------------------------------------------


_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamhouse docs</title></head>
<body>
<h1>streamhouse: data documentation</h1>
<ul>
<li><a href="gx/index.html">Great Expectations Data Docs</a>: every suite of bronze, silver
and the marts, and each validation's result.</li>
<li><a href="dbt/index.html">dbt docs</a>: the marts' models, sources, tests and lineage.</li>
</ul>
<p>Last published {published} by {origin}.</p>
<p>Offline, the Data Docs pages show unstyled: their CSS and scripts come from CDNs.</p>
</body></html>
"""


def publish_docs(settings: Settings, origin: str) -> str:
    """dbt's docs (one static page, generated by ``build_marts``) and GX's Data Docs in one
    site; its index page. Needs no Spark."""
    from quality.context import DOCS_SITE, file_context

    target = dbt_work_dir(settings) / "target"
    if not (target / "static_index.html").is_file():
        raise UserFacingError(
            f"no dbt docs in {target}: build the marts first (the build generates them)."
        )
    site = settings.docs_site_dir
    dbt_dir = site / "dbt"
    dbt_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target / "static_index.html", dbt_dir / "index.html")
    for artifact in ("manifest.json", "catalog.json"):
        shutil.copyfile(target / artifact, dbt_dir / artifact)
    with file_context(settings) as context:
        context.build_data_docs(site_names=[DOCS_SITE])
    index = site / "index.html"
    index.write_text(
        _INDEX.format(
            published=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), origin=origin
        )
    )
    return str(index)
