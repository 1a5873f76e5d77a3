"""### lakehouse_daily: one day of the lakehouse, idempotent, validated, documented

For the run's data interval (a UTC day of event time; a manual run names it
with the param `day`):

1. **wait_for_bronze** (deferrable, in the triggerer): bronze's watermark, the
   newest Kafka timestamp it holds, must pass the day's end plus the allowed
   lateness (`spark.watermark_delay`).
2. **validate_bronze**, **validate_silver**: Great Expectations suites of the
   day's rows (schema, keys, ranges, no future event time; one row per quake,
   known statuses). A failed expectation fails the task at once and alerts.
3. **build_marts**: `dbt build` of the interval (MERGE on the marts' keys,
   with the lookback and the older event dates whose versions arrived that
   day, read from bronze's ingest_date partition), seeds only when their CSV
   changed; then `dbt docs generate` in the same Spark session.
4. **compact** and **validate_marts**, side by side:
   - compact: OPTIMIZE of bronze's partitions holding the day, of silver
     and of the marts' interval (ZORDER where queries filter), then VACUUM
     with a retention that keeps the time-travel window; files before/after.
     It changes no row, so the validation need not wait for it;
   - validate_marts: referential integrity, counts reconciled with silver
     and bronze.
5. **publish_docs**: GX Data Docs and the dbt docs in one local site (no Spark).
6. **report**: the run's outcome to the Pushgateway; its summary.

Every task is idempotent over the interval, and its Delta commits carry
the run's marker: a rerun changes no row (see `orchestration/proof.py`).
Failures, GX failures and a missed deadline notify the webhook and SMTP.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pendulum
from airflow.sdk import (
    AsyncCallback,
    CronDataIntervalTimetable,
    DeadlineAlert,
    DeadlineReference,
    Param,
    dag,
    get_current_context,
    task,
)

from orchestration.config import settings
from orchestration.dag_defaults import default_args
from orchestration.notifiers import LakehouseNotifier
from orchestration.sensors import BronzeWatermarkSensor

_SETTINGS = settings()
_AIRFLOW = _SETTINGS.airflow
# Outside the stack (a DagBag test, a laptop) no go-live day is set: the seed data's first day.
_START = _AIRFLOW.start_date or date(2019, 2, 10)


@dag(
    dag_id="lakehouse_daily",
    # @daily with a data interval: Airflow 3 turns a bare "@daily" into a
    # CronTriggerTimetable, whose interval is empty.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    # The platform's go-live day (the stack sets it, `airflow.start_date`): unpaused, the DAG
    # catches up day by day from there; older days are backfills (`airflow backfill create`).
    start_date=pendulum.datetime(_START.year, _START.month, _START.day, tz="UTC"),
    catchup=True,
    max_active_runs=1,
    tags=["lakehouse", "daily", "marts", "quality", "maintenance"],
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="The UTC day to process (YYYY-MM-DD); empty: the run's data interval.",
        )
    },
    default_args=default_args(_AIRFLOW),
    on_failure_callback=[LakehouseNotifier()],
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(seconds=_AIRFLOW.daily_deadline_s),
        callback=AsyncCallback(
            "orchestration.notifiers.deadline_missed",
            kwargs={"deadline_s": _AIRFLOW.daily_deadline_s},
        ),
    ),
    doc_md=__doc__,
)
def lakehouse_daily() -> None:
    wait_for_bronze = BronzeWatermarkSensor(
        task_id="wait_for_bronze",
        poke_interval=_AIRFLOW.wait_poke_s,
        timeout=_AIRFLOW.wait_timeout_s,
        deferrable=True,
    )

    @task
    def validate_bronze() -> dict[str, Any]:
        from orchestration.tasks import validate

        return validate(get_current_context(), "bronze")

    @task
    def validate_silver() -> dict[str, Any]:
        from orchestration.tasks import validate

        return validate(get_current_context(), "silver")

    @task
    def build_marts() -> dict[str, Any]:
        from orchestration.tasks import build_marts

        return build_marts(get_current_context())

    @task
    def compact(build: dict[str, Any]) -> dict[str, Any]:
        from orchestration.tasks import compact

        return compact(get_current_context())

    @task
    def validate_marts(build: dict[str, Any]) -> dict[str, Any]:
        from orchestration.tasks import validate

        return validate(get_current_context(), "marts", build_started=build["build_started"])

    @task
    def publish_docs(marts: dict[str, Any]) -> str:
        from orchestration.tasks import publish_docs

        return publish_docs(get_current_context())

    @task
    def report(
        *,
        bronze: dict[str, Any],
        silver: dict[str, Any],
        build: dict[str, Any],
        compaction: dict[str, Any],
        marts: dict[str, Any],
        docs: str,
    ) -> dict[str, Any]:
        from orchestration.tasks import report

        return report(get_current_context(), [bronze, silver, marts], build, compaction, docs)

    bronze, silver = validate_bronze(), validate_silver()
    wait_for_bronze >> [bronze, silver]
    build = build_marts()
    [bronze, silver] >> build
    # Compaction changes no row (dataChange=false) and VACUUM keeps what a reader's snapshot
    # holds: the marts' validation reads beside it instead of waiting for it.
    compaction = compact(build)
    marts = validate_marts(build)
    docs = publish_docs(marts)
    report(bronze=bronze, silver=silver, build=build, compaction=compaction, marts=marts, docs=docs)


lakehouse_daily()
