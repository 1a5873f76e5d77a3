"""Validate a layer of the lake for an interval: the checkpoints of its suites, run on Spark.

The SparkSession is the caller's, built before GX is touched and never
configured by GX (no ``spark_config``): GX's Spark data source uses the
active session, so it never restarts one that differs. Each checkpoint gets
its suite's DataFrame of the interval (``quality.frames``), updates the Data
Docs and, on failure, alerts people (``quality.actions``). Each suite's
result is pushed to the Pushgateway (``monitoring.batch_metrics``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.intervals import Interval
from core.settings import Settings
from lake.tables import BRONZE_QUAKE_CHANGES, SILVER_QUAKES
from marts.profiles import marts_root
from monitoring.batch_metrics import MetricsPushError, push_quality_result
from monitoring.notify import Origin
from quality import frames
from quality.actions import AlertContext, alerting_for
from quality.context import file_context
from quality.suites import suites_of
from spark_jobs.transforms import duration_ms

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

DIMENSIONS = ("dim_date", "dim_network", "dim_magnitude_type", "dim_region")


class QualityCheckError(RuntimeError):
    """A validation found data that breaks its suite (the alert has been sent)."""

    def __init__(self, report: LayerReport) -> None:
        failed = [o.suite for o in report.outcomes if not o.success]
        super().__init__(
            f"{report.layer} failed {', '.join(failed)} for {report.interval}: "
            f"{report.failed_expectations} expectation(s) unmet; see the Data Docs "
            f"({report.docs_index}) and the alert sent."
        )
        self.report = report


@dataclass
class SuiteOutcome:
    """One suite's validation of the interval."""

    suite: str
    success: bool
    evaluated: int
    passed: int
    failures: list[str]
    docs_page: str | None
    alert: Any = None

    @property
    def failed(self) -> int:
        return self.evaluated - self.passed


@dataclass
class LayerReport:
    """Every suite of one layer for one interval."""

    layer: str
    interval: str
    docs_index: str
    outcomes: list[SuiteOutcome] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failed_expectations(self) -> int:
        return sum(o.failed for o in self.outcomes)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (an Airflow task's return value, the CLI's table)."""
        return {
            "layer": self.layer,
            "interval": self.interval,
            "success": self.success,
            "suites": {
                o.suite: {
                    "success": o.success,
                    "evaluated": o.evaluated,
                    "passed": o.passed,
                    "failures": o.failures,
                    "docs": o.docs_page,
                }
                for o in self.outcomes
            },
        }


def expectation_parameters(settings: Settings, interval: Interval) -> dict[str, Any]:
    """The values of the suites' ``$PARAMETER``s, from the settings and the interval."""
    days = max(1, round((interval.end - interval.start).total_seconds() / 86_400))
    return {
        "min_rows": settings.quality.min_rows_per_day * days,
        "max_event_time_ahead_ms": duration_ms(settings.spark.max_event_time_ahead),
    }


def _table(spark: SparkSession, path: str) -> DataFrame:
    return spark.read.format("delta").load(path)


def layer_frames(
    spark: SparkSession,
    settings: Settings,
    layer: str,
    interval: Interval,
    build_started: datetime | None = None,
) -> dict[str, DataFrame]:
    """Each suite of ``layer`` with the DataFrame it validates."""
    lake = settings.lake_uri
    bronze = _table(spark, BRONZE_QUAKE_CHANGES.path(lake))
    if layer == "bronze":
        return {"bronze_quake_changes": frames.bronze_frame(bronze, interval)}
    silver = _table(spark, SILVER_QUAKES.path(lake))
    if layer == "silver":
        return {"silver_quakes": frames.silver_frame(silver, interval)}
    root = marts_root(settings)
    fct_quakes = _table(spark, f"{root}/fct_quakes")
    fct_revisions = _table(spark, f"{root}/fct_quake_revisions")
    dims = {name: _table(spark, f"{root}/{name}") for name in DIMENSIONS}
    started = build_started or datetime.now(UTC)
    return {
        "marts_fct_quakes_integrity": frames.fct_quakes_frame(
            fct_quakes, dims, silver, interval, started
        ),
        "marts_fct_quake_revisions_integrity": frames.fct_revisions_frame(
            fct_revisions, dims, bronze, interval
        ),
        "marts_reconciliation": frames.reconciliation_frame(
            fct_quakes, fct_revisions, silver, bronze, interval, build_started=started
        ),
    }


def _outcome(context: Any, checkpoint_result: Any) -> SuiteOutcome:
    from quality.actions import describe_failures

    ((identifier, result),) = checkpoint_result.run_results.items()
    statistics = result.statistics
    urls = context.get_docs_sites_urls(resource_identifier=identifier)
    return SuiteOutcome(
        suite=result.suite_name,
        success=bool(result.success),
        evaluated=int(statistics["evaluated_expectations"]),
        passed=int(statistics["successful_expectations"]),
        failures=describe_failures(result),
        docs_page=urls[0]["site_url"] if urls else None,
    )


def validate_layer(
    spark: SparkSession,
    settings: Settings,
    layer: str,
    interval: Interval,
    *,
    origin: Origin,
    build_started: datetime | None = None,
    run_name: str | None = None,
) -> LayerReport:
    """Run every checkpoint of ``layer`` on the interval; the report (never raises on failure).

    ``build_started``: when the marts' build began (rows changed since are
    not expected in the marts yet); ``run_name``: how the results are filed
    (the Airflow run id, or the command's time).
    """
    from great_expectations.core.run_identifier import RunIdentifier

    parameters = expectation_parameters(settings, interval)
    now = datetime.now(UTC)
    run_id = RunIdentifier(run_name=run_name or f"manual-{now:%Y%m%dT%H%M%S}", run_time=now)
    suites = [suite.name for suite in suites_of(layer)]
    frames_by_suite = layer_frames(spark, settings, layer, interval, build_started)
    with file_context(settings) as context:
        docs_index = str(settings.docs_site_dir / "gx" / "index.html")
        report = LayerReport(layer, interval.label(), docs_index)
        alert_context = AlertContext(settings.alerting, origin, interval.label(), docs_index)
        with alerting_for(alert_context):
            for name in suites:
                checkpoint = context.checkpoints.get(name)
                result = checkpoint.run(
                    batch_parameters={"dataframe": frames_by_suite[name]},
                    expectation_parameters=parameters,
                    run_id=run_id,
                )
                outcome = _outcome(context, result)
                report.outcomes.append(outcome)
                _push(settings, outcome)
    return report


def _push(settings: Settings, outcome: SuiteOutcome) -> None:
    try:
        push_quality_result(
            settings,
            suite=outcome.suite,
            passed=outcome.passed,
            failed=outcome.failed,
            finished_at=datetime.now(UTC),
        )
    except MetricsPushError as error:
        # Monitoring being down does not change the data's verdict.
        log.warning("%s", error)


def require_success(report: LayerReport) -> None:
    """Raise ``QualityCheckError`` when an expectation of the layer failed."""
    if not report.success:
        raise QualityCheckError(report)
