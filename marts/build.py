"""The marts' commands as steps: build an interval, run the models, each on one SparkSession.

``build`` adds to an incremental run's interval the event dates beyond its lookback
that received versions in it (``marts.arrivals``), loads the seeds whose CSV changed
(``marts.seeds``), leaves out the marts built from seeds alone whose inputs did not
change (``marts.static``) and runs ``dbt build`` over the interval.

dbt's unit tests are left out of a build unless asked (``unit_tests=True`` or
``marts.unit_tests_in_build``): their inputs are static, so a production run learns
nothing from them (dbt Labs runs them in development and CI only); ``marts test``
runs them. When a build does run them on a fresh catalog, they wait until the models
exist (a unit test of an incremental model reads the columns of the existing table)
and run right after them, in the same command.
The CLI (``streamhouse marts``), the demo and the benchmark call these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from marts import delivery
from marts.arrivals import DateRange, with_revised_ranges
from marts.runner import DbtRun, Progress, require_success, run_dbt
from marts.seeds import mark_loaded, seed_checksums, stale_seeds
from marts.static import fingerprints, mark_built, unchanged_static

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The marts built incrementally (MERGE): every fact and dimension.
INCREMENTAL_MARTS = (
    "fct_quake_revisions",
    "fct_quakes",
    "fct_network_activity_daily",
    "dim_network",
    "dim_magnitude_type",
    "dim_region",
    "dim_date",
)

#: The unit tests alone (after a first build created the tables they read).
UNIT_TESTS = ("test", "--select", "test_type:unit")
#: Said when a build leaves the unit tests out.
UNIT_TESTS_LEFT_OUT = (
    "unit tests: left out (static inputs: `marts test` runs them, or `marts build --unit-tests`)"
)


@dataclass
class BuildResult:
    """What a build did: the dbt commands it ran, the seeds it loaded, its wall time."""

    runs: list[DbtRun] = field(default_factory=list)
    seeds_loaded: list[str] = field(default_factory=list)
    static_left_out: list[str] = field(default_factory=list)
    #: What it delivered to the version-level facts, as published for the dashboards.
    deliveries: list[delivery.Delivery] = field(default_factory=list)
    #: The dbt vars it ran with (the interval and its revised ranges): a later dbt
    #: command given the same vars reuses the parsed project (partial parsing).
    window: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def marts_exist(spark: SparkSession, settings: Settings) -> bool:
    """True when every incremental mart is in the catalog."""
    schema = settings.catalog.marts_schema
    return all(spark.catalog.tableExists(f"{schema}.{name}") for name in INCREMENTAL_MARTS)


def build_arguments(
    *,
    full_refresh: bool,
    select: list[str],
    fresh_seeds: list[str],
    first: bool,
    unchanged: list[str] | None = None,
    unit_tests: bool = False,
) -> list[str]:
    """The ``dbt build`` arguments: the selection, the seeds and static marts left alone,
    and the unit tests left out unless asked; asked on a first build, they are left
    for after it (``UNIT_TESTS``).

    Left-out static marts take only their own tests with them (``cautious``): a fact's
    relationship test to one of them still runs.
    """
    args = ["build"]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", *select]
    if fresh_seeds or unchanged:
        args += ["--exclude", *fresh_seeds, *(unchanged or [])]
    if unchanged:
        args += ["--indirect-selection", "cautious"]
    if first or not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    return args


def static_to_skip(
    spark: SparkSession, settings: Settings, window: dict[str, Any]
) -> tuple[dict[str, str], list[str]]:
    """The static marts' fingerprints for a run over ``window``, and those already built
    from them (a run may leave these out)."""
    prints = fingerprints(settings.marts.project_dir, window)
    return prints, unchanged_static(spark, settings.catalog.marts_schema, prints)


def mark_static_built(
    spark: SparkSession, settings: Settings, prints: dict[str, str], run: DbtRun
) -> None:
    """Record the fingerprint of each static mart ``run`` built, once the run succeeded:
    a static mart whose test failed is built and tested again next time."""
    if run.success:
        built = [n.name for n in run.nodes if n.resource_type == "model" and n.status == "success"]
        mark_built(spark, settings.catalog.marts_schema, prints, built)


def build(
    spark: SparkSession,
    settings: Settings,
    window: dict[str, Any],
    *,
    full_refresh: bool = False,
    select: list[str] | None = None,
    progress: Progress | None = None,
    on_step: Progress | None = None,
    unit_tests: bool | None = None,
) -> BuildResult:
    """``dbt build`` over ``window`` (``profiles.interval_vars``); raises naming a failed node.

    ``unit_tests``: run dbt's unit tests too (default: ``marts.unit_tests_in_build``).
    """
    began = time.monotonic()
    result = BuildResult()
    if unit_tests is None:
        unit_tests = settings.marts.unit_tests_in_build
    first = not marts_exist(spark, settings)
    if on_step is not None:
        if not unit_tests:
            on_step("step", UNIT_TESTS_LEFT_OUT)
        elif first:
            on_step("step", "first build: the unit tests run once the marts exist")
    if not full_refresh:
        looked = time.monotonic()
        window = with_revised_ranges(spark, settings, window)
        if on_step is not None:
            ranges = ", ".join(f"[{a}, {b})" for a, b in window["revised_ranges"])
            on_step(
                "step",
                "event dates beyond the lookback with versions arriving in the interval: "
                f"{ranges or 'none'} (looked up in {time.monotonic() - looked:.1f} s)",
            )
    checksums = seed_checksums(settings.marts.project_dir)
    stale = list(checksums) if full_refresh else stale_seeds(spark, settings, checksums)
    prints = fingerprints(settings.marts.project_dir, window)
    # A full refresh, a first build or the user's selection builds what was asked.
    asked = full_refresh or first or bool(select)
    unchanged = [] if asked else unchanged_static(spark, settings.catalog.marts_schema, prints)
    if on_step is not None:
        on_step("step", f"seeds to load: {', '.join(stale) or 'none (unchanged)'}")
        if unchanged:
            on_step("step", f"left out, their inputs unchanged: {', '.join(unchanged)}")
    args = build_arguments(
        full_refresh=full_refresh,
        select=select or [],
        fresh_seeds=[name for name in checksums if name not in stale],
        first=first,
        unchanged=unchanged,
        unit_tests=unit_tests,
    )
    result.window = window
    before = delivery.versions_before(spark, settings)
    run = run_dbt(settings, args, window, progress)
    result.runs.append(run)
    loaded = [n.name for n in run.nodes if n.resource_type == "seed" and n.status == "success"]
    mark_loaded(spark, settings, loaded, checksums)
    result.seeds_loaded = loaded
    result.static_left_out = unchanged
    mark_static_built(spark, settings, prints, run)
    require_success(run)
    if first and unit_tests:
        unit = run_dbt(settings, list(UNIT_TESTS), window, progress)
        result.runs.append(unit)
        require_success(unit)
    merged = None if full_refresh or first else delivery.merged_ranges(window)
    result.deliveries = publish_deliveries(spark, settings, before, merged, on_step)
    result.seconds = time.monotonic() - began
    return result


def publish_deliveries(
    spark: SparkSession,
    settings: Settings,
    before: dict[str, int | None],
    ranges: list[DateRange] | None,
    on_step: Progress | None = None,
) -> list[delivery.Delivery]:
    """Measure what the build delivered and push it for the dashboards (``marts.delivery``).

    The marts are built either way: a Pushgateway that is not running is one line.
    """
    from monitoring.batch_metrics import MetricsPushError

    delivered = delivery.deliveries(spark, settings, before, ranges)
    for figures in delivered:
        if on_step is not None:
            on_step("step", f"delivered: {figures.line()}")
        try:
            delivery.publish(settings, figures)
        except MetricsPushError as error:
            if on_step is not None:
                on_step("step", f"not published: {error}")
            break
    return delivered


def run_models(
    settings: Settings, window: dict[str, Any], progress: Progress | None = None
) -> DbtRun:
    """``dbt run`` over ``window``: the models only (no seeds, no tests)."""
    run = run_dbt(settings, ["run"], window, progress)
    require_success(run)
    return run
