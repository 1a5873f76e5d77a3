"""The dbt marts against the real stack, one shared scenario (CI budget: a dbt command in a
JVM of its own is a minute or more on two cores, so only the first build runs that way, the
others on the stack's Spark Connect server, the marts' ``connect`` target).

The stack's poller and stream fill the lake from the simulator's fixture (2019
events, all late by the record-level rule, so in no window) and the load
generator adds events of today (on time: the window tables and
fct_network_activity_daily get rows). The marts are built once from scratch
(`streamhouse marts build --full-refresh`, its own JVM, the stream still
running). Then three changes go through the real
path (simulator -> poller -> Kafka -> stream -> bronze and silver): a late
revision of a quake two days before the interval, a deletion, and a revision
to magnitude 9.5. A CHECK constraint on ``fct_quakes`` (magnitude < 9) makes
the first incremental build fail inside that mart's MERGE; without it the
same build passes. The tests read what the scenario left, each asserting one
promise of the issue: a failed model leaves its table at its version, a late
revision lands in its row, a delete keeps the history, a rebuild commits
nothing, a full refresh equals the incremental result, the marts equal an
independent computation from silver and bronze, the docs hold every model.
Last, a revision of a quake weeks before any lookback, merged by the daily run
of the day it arrived.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812

from core.settings import PROJECT_ROOT, Settings, settings_env
from lake.tables import BRONZE_QUAKE_CHANGES, QUAKE_WINDOWS_1H, QUAKE_WINDOWS_1M, SILVER_QUAKES
from marts.build import INCREMENTAL_MARTS, UNIT_TESTS_LEFT_OUT
from marts.profiles import dbt_work_dir, marts_root
from streamhouse.runtime import stack

# One scenario of six dbt commands (each a JVM). The shared fixture's setup counts
# against the first test's timeout: it took 14 minutes with a load average of 18, and
# went past 20 minutes (timed out at 1200 s) with a load average of 21 on the shared machine.
pytestmark = pytest.mark.timeout(1800)

FACTS = ("fct_quake_revisions", "fct_quakes", "fct_network_activity_daily")
QUANTILES = ("0.5", "0.95", "0.99")
CONSTRAINT = "magnitude_below_9"
FIXTURE_RECORDS = 1304
LOAD_EVENTS = 3000


def _cli(
    settings: Settings, *args: str, timeout: int = 1200, connect: bool = True
) -> subprocess.CompletedProcess[str]:
    """``streamhouse <args>``; ``connect``: dbt on the stack's Spark Connect server (the marts'
    ``connect`` target), else in a driver of the command's own (the default ``session``)."""
    env = settings_env(settings)
    if connect:
        env["STREAMHOUSE_MARTS__TARGET"] = "connect"
    env["STREAMHOUSE_LOADGEN__METRICS_PORT"] = "0"
    env["COLUMNS"] = "200"  # rich wraps at 80 columns without a terminal: keep lines whole
    return subprocess.run(
        [sys.executable, "-m", "streamhouse.cli", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout[-4000:] + result.stderr[-4000:]


def _path(settings: Settings, mart: str) -> str:
    return f"{marts_root(settings)}/{mart}"


def _version(spark: SparkSession, path: str) -> int:
    row = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()
    assert row is not None
    return int(row["version"])


def _at(spark: SparkSession, path: str, version: int) -> DataFrame:
    return spark.read.format("delta").option("versionAsOf", version).load(path)


def _differences(left: DataFrame, right: DataFrame) -> tuple[int, int]:
    return left.exceptAll(right).count(), right.exceptAll(left).count()


@dataclass
class Change:
    """A change made at the simulator, and the version it got."""

    quake_id: str
    event_date: date
    updated_ms: int
    magnitude_before: float | None


@dataclass
class Scenario:
    """What the shared scenario did and saw, for the tests to assert on."""

    settings: Settings
    interval: tuple[date, date]
    late: Change
    deleted: Change
    huge: Change
    failed: subprocess.CompletedProcess[str]
    fct_quakes_before_failure: int
    fct_quakes_after_failure: int
    incremental: subprocess.CompletedProcess[str]
    after_incremental: dict[str, int] = field(default_factory=dict)
    #: The incremental build's nodes (dbt's run_results.json): name -> status.
    incremental_nodes: dict[str, str] = field(default_factory=dict)
    #: Their unique ids.
    incremental_ids: list[str] = field(default_factory=list)
    before_incremental: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _wait(what: str, check: Any, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(2)


def _tables_ready(settings: Settings) -> bool:
    needed = (BRONZE_QUAKE_CHANGES, SILVER_QUAKES, QUAKE_WINDOWS_1M, QUAKE_WINDOWS_1H)
    return all((Path(t.path(settings.lake_uri)) / "_delta_log").is_dir() for t in needed)


def _silver(spark: SparkSession, settings: Settings) -> DataFrame:
    return spark.read.format("delta").load(SILVER_QUAKES.path(settings.lake_uri))


def _fixture_quakes(spark: SparkSession, settings: Settings) -> list[Any]:
    """The fixture's quakes that exist now and have a magnitude (the load generator's left
    out): id, magnitude, event date."""
    return (
        _silver(spark, settings)
        .where(
            ~F.col("is_deleted") & F.col("mag").isNotNull() & ~F.col("entity_id").startswith("lg")
        )
        .select(
            "entity_id", "mag", F.to_date(F.timestamp_millis("event_time_ms")).alias("event_date")
        )
        .collect()
    )


def _pick(rows: list[Any], event_date: date, taken: set[str]) -> Any:
    chosen = min(
        (r for r in rows if r.event_date == event_date and r.entity_id not in taken),
        key=lambda r: r.entity_id,
    )
    taken.add(chosen.entity_id)
    return chosen


def _change(settings: Settings, row: Any, kind: str, properties: dict[str, Any] | None) -> Change:
    source = settings.source
    answer = httpx.post(
        f"http://{source.simulator_host}:{source.simulator_port}/admin/change",
        json={"id": row.entity_id, "kind": kind, "properties": properties},
        timeout=10,
    )
    answer.raise_for_status()
    return Change(row.entity_id, row.event_date, int(answer.json()["updated"]), row.mag)


@pytest.fixture(scope="module")
def scenario(infra_stack: Settings, spark: SparkSession) -> Iterator[Scenario]:
    # The stream as the stack runs it (silver and the rollups on the test stack's 10 s
    # triggers): restarting both drivers on faster ones cost more than it saved waiting.
    settings = infra_stack
    seconds: dict[str, float] = {}
    began = time.monotonic()
    stack.up(settings, report=print)
    load = _cli(settings, "loadgen", "--events", str(LOAD_EVENTS), "--rate", "1000")
    assert load.returncode == 0, _output(load)

    def lake_complete() -> bool:
        if not _tables_ready(settings):
            return False
        bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
        entities = bronze.select("entity_id").distinct().count()
        return (
            bronze.count() >= FIXTURE_RECORDS + LOAD_EVENTS
            and _silver(spark, settings).count() == entities
        )

    _wait("the fixture and the load through bronze, silver and the windows", lake_complete)
    seconds["stack and lake"] = time.monotonic() - began

    step = time.monotonic()
    # The first build in a driver of its own (the default target); the later ones on the
    # stack's Connect server, a warm driver (CI budget: a JVM start is 15-35 s).
    full = _cli(settings, "marts", "build", "--full-refresh", connect=False)
    seconds["marts build --full-refresh (first build)"] = time.monotonic() - step
    assert full.returncode == 0, _output(full)

    rows = _fixture_quakes(spark, settings)
    last = max(r.event_date for r in rows)
    taken: set[str] = set()
    late = _change(
        settings, _pick(rows, last - timedelta(days=2), taken), "revision", {"mag": 1.23}
    )
    deleted = _change(settings, _pick(rows, last, taken), "deletion", None)
    huge = _change(settings, _pick(rows, last - timedelta(days=1), taken), "revision", {"mag": 9.5})

    def arrived() -> bool:
        versions = {
            r.entity_id: (r.updated_ms, r.is_deleted)
            for r in _silver(spark, settings)
            .where(F.col("entity_id").isin(late.quake_id, deleted.quake_id, huge.quake_id))
            .collect()
        }
        return versions == {
            late.quake_id: (late.updated_ms, False),
            deleted.quake_id: (deleted.updated_ms, True),
            huge.quake_id: (huge.updated_ms, False),
        }

    step = time.monotonic()
    _wait("the three changes to reach silver", arrived)
    seconds["changes through poller, Kafka, stream"] = time.monotonic() - step

    interval = (last, last + timedelta(days=1))
    quakes = _path(settings, "fct_quakes")
    spark.sql(f"ALTER TABLE delta.`{quakes}` ADD CONSTRAINT {CONSTRAINT} CHECK (magnitude < 9)")
    before_failure = _version(spark, quakes)
    window = ("--start", interval[0].isoformat(), "--end", interval[1].isoformat())
    step = time.monotonic()
    failed = _cli(settings, "marts", "build", *window, "--select", "fct_quakes")
    seconds["marts build (fails in fct_quakes)"] = time.monotonic() - step
    after_failure = _version(spark, quakes)
    spark.sql(f"ALTER TABLE delta.`{quakes}` DROP CONSTRAINT {CONSTRAINT}")

    before_incremental = {m: _version(spark, _path(settings, m)) for m in INCREMENTAL_MARTS}
    step = time.monotonic()
    incremental = _cli(settings, "marts", "build", *window)
    seconds["marts build (incremental)"] = time.monotonic() - step
    run_results = json.loads((dbt_work_dir(settings) / "target" / "run_results.json").read_text())
    result = Scenario(
        settings=settings,
        interval=interval,
        late=late,
        deleted=deleted,
        huge=huge,
        failed=failed,
        fct_quakes_before_failure=before_failure,
        fct_quakes_after_failure=after_failure,
        incremental=incremental,
        after_incremental={m: _version(spark, _path(settings, m)) for m in INCREMENTAL_MARTS},
        incremental_nodes={
            r["unique_id"].split(".")[2]: r["status"] for r in run_results["results"]
        },
        incremental_ids=[r["unique_id"] for r in run_results["results"]],
        before_incremental=before_incremental,
        seconds=seconds,
    )
    yield result
    print("marts scenario, seconds per step:", json.dumps(result.seconds, indent=1))


def test_a_failed_model_fails_the_build_naming_it(scenario: Scenario) -> None:
    failed = scenario.failed
    assert failed.returncode == 1, _output(failed)
    assert "model fct_quakes" in failed.stderr, _output(failed)
    assert CONSTRAINT in failed.stderr or "CHECK constraint" in _output(failed)
    assert "Traceback" not in failed.stderr


def test_a_failed_model_leaves_its_table_at_its_version(
    scenario: Scenario, spark: SparkSession
) -> None:
    """Delta's transaction: the MERGE that failed mid-write committed nothing."""
    quakes = _path(scenario.settings, "fct_quakes")
    assert scenario.fct_quakes_after_failure == scenario.fct_quakes_before_failure
    at_failure = _at(spark, quakes, scenario.fct_quakes_after_failure)
    magnitudes = {
        r.quake_id: r.magnitude
        for r in at_failure.where(
            F.col("quake_id").isin(scenario.huge.quake_id, scenario.late.quake_id)
        ).collect()
    }
    # Neither the row that broke the constraint nor the other rows of the same MERGE.
    assert magnitudes == {
        scenario.huge.quake_id: scenario.huge.magnitude_before,
        scenario.late.quake_id: scenario.late.magnitude_before,
    }
    assert at_failure.where(F.col("quake_id") == scenario.deleted.quake_id).count() == 1


def test_the_incremental_build_passes(scenario: Scenario) -> None:
    assert scenario.incremental.returncode == 0, _output(scenario.incremental)
    # The seeds were loaded by the first build and are unchanged: not reloaded.
    assert "seeds to load: none (unchanged)" in scenario.incremental.stderr


def test_a_build_leaves_the_unit_tests_to_marts_test(scenario: Scenario) -> None:
    """dbt's unit tests have static inputs: no build runs them (dbt Labs: development and CI
    only); ``marts test`` does, on the stack's catalog, each of them passing."""
    said = " ".join(scenario.incremental.stderr.split())
    assert UNIT_TESTS_LEFT_OUT in said, said[-2000:]
    assert scenario.incremental_ids, "the incremental build ran no node"
    assert not [i for i in scenario.incremental_ids if i.startswith("unit_test.")]

    step = time.monotonic()
    result = _cli(scenario.settings, "marts", "test", "--select", "test_type:unit")
    scenario.seconds["marts test --select test_type:unit"] = time.monotonic() - step
    assert result.returncode == 0, _output(result)
    results = json.loads(
        (dbt_work_dir(scenario.settings) / "target" / "run_results.json").read_text()
    )["results"]
    ran = {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in results}
    declared = {
        test["name"]
        for spec in (PROJECT_ROOT / "dbt" / "models").rglob("*.yml")
        for test in (yaml.safe_load(spec.read_text()) or {}).get("unit_tests", [])
    }
    assert declared, "no unit test declared under dbt/models"
    assert ran == dict.fromkeys(declared, "pass"), ran


def test_the_incremental_build_leaves_out_the_static_marts_not_their_relationships(
    scenario: Scenario,
) -> None:
    """The dimensions built from seeds alone did not change since the first build: the
    incremental build leaves them and their own tests out, and still runs the facts'
    relationship tests to them."""
    said = " ".join(scenario.incremental.stderr.split())
    static = ("dim_date", "dim_magnitude_type", "dim_region")
    assert f"left out, their inputs unchanged: {', '.join(static)}" in said, said[-2000:]
    nodes = scenario.incremental_nodes
    assert not set(static) & set(nodes), sorted(nodes)
    assert not [n for n in nodes if n.startswith(("unique_dim_date", "not_null_dim_region"))]
    assert {"fct_quakes", "fct_quake_revisions", "dim_network"} <= set(nodes)
    for test in (
        "relationships_fct_quakes_event_date__date_day__ref_dim_date_",
        "relationships_fct_quakes_fe_region_number__fe_region_number__ref_dim_region_",
    ):
        assert nodes.get(test) == "pass", (test, sorted(nodes))
    for mart in static:
        assert scenario.after_incremental[mart] == scenario.before_incremental[mart], mart


def _pushed(settings: Settings, model: str) -> dict[str, float]:
    """The Pushgateway's samples of ``model``'s last build: metric[quantile] -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{settings.pushgateway_url}/metrics", timeout=10).text
    return {
        sample.name + (f"[{sample.labels['quantile']}]" if "quantile" in sample.labels else ""): (
            sample.value
        )
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("streamhouse_mart_") and sample.labels.get("model") == model
    }


def test_the_build_publishes_what_it_delivered_for_the_dashboards(scenario: Scenario) -> None:
    """The incremental build delivered the scenario's revisions, produced minutes before it
    (the changes went through the poller, Kafka and the stream first): their latency from
    produced-at to the build's commit is in the Pushgateway the marts' panel reads."""
    built_after = time.time() - sum(scenario.seconds.values()) - 60
    print(*(ln for ln in scenario.incremental.stderr.splitlines() if "delivered:" in ln), sep="\n")
    for model in ("fct_quake_revisions", "fct_quakes"):
        assert f"delivered: {model}: " in scenario.incremental.stderr, _output(scenario.incremental)
        pushed = _pushed(scenario.settings, model)
        p50, p95, p99 = (pushed[f"streamhouse_mart_build_latency_seconds[{q}]"] for q in QUANTILES)
        assert 0 < p50 <= p95 <= p99 < 3600, pushed
        finished = pushed["streamhouse_mart_last_build_finished_timestamp_seconds"]
        newest = pushed["streamhouse_mart_newest_data_timestamp_seconds"]
        assert built_after < newest < finished <= time.time(), pushed
        assert pushed["streamhouse_mart_last_build_rows"] > 0, pushed


def test_a_late_revision_lands_in_its_row(scenario: Scenario, spark: SparkSession) -> None:
    """A revision of a quake two days before the interval, merged by the lookback."""
    late = scenario.late
    settings = scenario.settings
    assert late.event_date < scenario.interval[0]
    quakes = spark.read.format("delta").load(_path(settings, "fct_quakes"))
    rows = quakes.where(F.col("quake_id") == late.quake_id).collect()
    assert len(rows) == 1
    assert (rows[0].magnitude, rows[0].updated_ms, rows[0].event_date) == (
        1.23,
        late.updated_ms,
        late.event_date,
    )
    assert rows[0].revision_count >= 2
    revisions = spark.read.format("delta").load(_path(settings, "fct_quake_revisions"))
    history = revisions.where(F.col("quake_id") == late.quake_id).orderBy("updated_ms").collect()
    assert history[-1].updated_ms == late.updated_ms
    assert history[-1].revision_number == len(history)
    assert {r.event_date for r in history} == {late.event_date}  # its own partition


def test_a_delete_removes_the_quake_and_keeps_its_history(
    scenario: Scenario, spark: SparkSession
) -> None:
    settings = scenario.settings
    gone = scenario.deleted.quake_id
    quakes = spark.read.format("delta").load(_path(settings, "fct_quakes"))
    assert quakes.where(F.col("quake_id") == gone).count() == 0
    revisions = spark.read.format("delta").load(_path(settings, "fct_quake_revisions"))
    history = revisions.where(F.col("quake_id") == gone).orderBy("updated_ms").collect()
    assert len(history) >= 2
    assert history[-1].op == "DELETE" and history[-1].updated_ms == scenario.deleted.updated_ms
    assert all(r.op == "UPSERT" for r in history[:-1])


def test_a_rebuild_commits_nothing_and_changes_no_mart(
    scenario: Scenario, spark: SparkSession
) -> None:
    """verify-idempotent over the interval just built: every MERGE empty, no new version."""
    start, end = scenario.interval
    step = time.monotonic()
    result = _cli(
        scenario.settings,
        "marts",
        "verify-idempotent",
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
    )
    scenario.seconds["marts verify-idempotent"] = time.monotonic() - step
    assert result.returncode == 0, _output(result)
    said = " ".join(result.stdout.split())
    assert "the rebuild committed no version (every MERGE was empty)" in said, _output(result)
    for mart in INCREMENTAL_MARTS:
        assert f"marts.{mart}" in said
        assert _version(spark, _path(scenario.settings, mart)) == scenario.after_incremental[mart]


def test_a_full_refresh_equals_the_incremental_result(
    scenario: Scenario, spark: SparkSession
) -> None:
    """The facts rebuilt from scratch equal what the incremental runs made of them."""
    step = time.monotonic()
    result = _cli(
        scenario.settings, "marts", "build", "--full-refresh", *(f"--select={f}" for f in FACTS)
    )
    scenario.seconds["marts build --full-refresh (the facts)"] = time.monotonic() - step
    assert result.returncode == 0, _output(result)
    for fact in FACTS:
        path = _path(scenario.settings, fact)
        incremental = scenario.after_incremental[fact]
        assert _version(spark, path) > incremental, f"{fact} was not rebuilt"
        refreshed = spark.read.format("delta").load(path)
        assert _differences(_at(spark, path, incremental), refreshed) == (0, 0), fact


def test_marts_equal_an_independent_computation(scenario: Scenario, spark: SparkSession) -> None:
    """fct_quakes = silver without tombstones; fct_quake_revisions = bronze's distinct versions."""
    settings = scenario.settings
    silver = _silver(spark, settings)
    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    quakes = spark.read.format("delta").load(_path(settings, "fct_quakes"))
    revisions = spark.read.format("delta").load(_path(settings, "fct_quake_revisions"))
    # The simulator changes nothing by itself in the test stack: the lake holds still.
    expected_quakes = {
        (r.entity_id, r.updated_ms)
        for r in silver.where(~F.col("is_deleted")).select("entity_id", "updated_ms").collect()
    }
    got_quakes = {(r.quake_id, r.updated_ms) for r in quakes.collect()}
    assert got_quakes and got_quakes == expected_quakes
    expected_versions = {
        (r.entity_id, r.updated_ms)
        for r in bronze.select("entity_id", "updated_ms").distinct().collect()
    }
    got_versions = [(r.quake_id, r.updated_ms) for r in revisions.collect()]
    assert len(got_versions) == len(set(got_versions)), "a version appears twice"
    assert set(got_versions) == expected_versions
    assert revisions.where(F.col("fe_region_number").isNull()).count() == 0
    # Revision numbers count each quake's versions in order, from 1.
    numbered = revisions.groupBy("quake_id").agg(
        F.count("*").alias("versions"), F.max("revision_number").alias("highest")
    )
    assert numbered.where(F.col("versions") != F.col("highest")).count() == 0


def test_network_activity_equals_the_minute_windows(
    scenario: Scenario, spark: SparkSession
) -> None:
    """fct_network_activity_daily = the 1-minute windows summed per UTC day and network."""
    settings = scenario.settings
    minutes = spark.read.format("delta").load(QUAKE_WINDOWS_1M.path(settings.lake_uri))
    expected = {
        (r.day, r.net, r.events, r.minutes)
        for r in minutes.groupBy(
            F.to_date("window_start").alias("day"), F.lower("net").alias("net")
        )
        .agg(F.sum("event_count").alias("events"), F.count("*").alias("minutes"))
        .collect()
    }
    daily = spark.read.format("delta").load(_path(settings, "fct_network_activity_daily"))
    got = {
        (r.activity_date, r.network_code, r.event_count, r.active_minutes) for r in daily.collect()
    }
    assert got and got == expected


def test_docs_catalog_holds_every_model_with_its_columns(scenario: Scenario) -> None:
    step = time.monotonic()
    result = _cli(scenario.settings, "marts", "docs")
    scenario.seconds["marts docs"] = time.monotonic() - step
    assert result.returncode == 0, _output(result)
    target = dbt_work_dir(scenario.settings) / "target"
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    assert (target / "index.html").is_file()
    models = {k: v for k, v in manifest["nodes"].items() if v["resource_type"] == "model"}
    assert {m["name"] for m in models.values()} >= set(INCREMENTAL_MARTS)
    for key, model in models.items():
        assert key in catalog["nodes"], f"{model['name']} is not in catalog.json"
        columns = catalog["nodes"][key]["columns"]
        assert columns, f"{model['name']} has no columns in catalog.json"
        assert model["description"], f"{model['name']} has no description"
        if model["name"].startswith(("fct_", "dim_")):
            documented = {c.lower() for c in model["columns"]}
            assert {c.lower() for c in columns} <= documented, (
                f"{model['name']}: columns without a description: "
                f"{sorted({c.lower() for c in columns} - documented)}"
            )


def test_a_missing_source_is_one_sentence(scenario: Scenario, tmp_path: Path) -> None:
    empty = scenario.settings.model_copy(update={"lake_root": str(tmp_path / "no-lake")})
    result = _cli(empty, "marts", "build", timeout=300)
    assert result.returncode == 1
    assert "lake.quake_changes" in result.stderr and "does not exist yet" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_committed_star_schema_is_the_generated_one(scenario: Scenario) -> None:
    """`marts docs` renders the diagram from the manifest; dbt/star_schema.md (linked from
    the README) must be that rendering, so a model changed without regenerating it fails."""
    generated = (dbt_work_dir(scenario.settings) / "target" / "star_schema.md").read_text()
    for mart in INCREMENTAL_MARTS:
        assert mart in generated
    committed = (PROJECT_ROOT / "dbt" / "star_schema.md").read_text()
    assert committed == generated, (
        "dbt/star_schema.md is stale: run `streamhouse marts docs --diagram dbt/star_schema.md`"
    )


def test_a_revision_weeks_late_lands_by_the_run_of_its_arrival_day(
    scenario: Scenario, spark: SparkSession
) -> None:
    """A revision of a quake far before any lookback (the fixture's 2019 events, revised
    today) is merged by the daily run of today, the day it arrived: its event date is one of
    the run's revised ranges, read from bronze's ingest_date partition (marts/arrivals.py).
    With the lookback alone it would wait for a full refresh."""
    settings = scenario.settings
    rows = _fixture_quakes(spark, settings)
    taken = {scenario.late.quake_id, scenario.deleted.quake_id, scenario.huge.quake_id}
    oldest = _pick(rows, min(r.event_date for r in rows), taken)
    revised = _change(settings, oldest, "revision", {"mag": 2.34})

    def arrived() -> bool:
        current = _silver(spark, settings).where(F.col("entity_id") == revised.quake_id)
        return [r.updated_ms for r in current.collect()] == [revised.updated_ms]

    _wait("the weeks-late revision to reach silver", arrived)
    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(settings.lake_uri))
    arrival = (
        bronze.where(
            (F.col("entity_id") == revised.quake_id) & (F.col("updated_ms") == revised.updated_ms)
        )
        .select("ingest_date")
        .first()
    )
    assert arrival is not None
    step = time.monotonic()
    # The daily run of the arrival day (today, unless the test crossed midnight UTC).
    daily = _cli(settings, "marts", "build", "--start", arrival.ingest_date.isoformat())
    scenario.seconds["marts build (today: a weeks-late revision)"] = time.monotonic() - step
    assert daily.returncode == 0, _output(daily)
    said = " ".join(daily.stderr.split())  # the build's steps go to stderr
    assert "with versions arriving in the interval: [" in said, _output(daily)

    quakes = spark.read.format("delta").load(_path(settings, "fct_quakes"))
    row = quakes.where(F.col("quake_id") == revised.quake_id).collect()
    assert [(r.magnitude, r.updated_ms, r.event_date) for r in row] == [
        (2.34, revised.updated_ms, revised.event_date)
    ]
    revisions = spark.read.format("delta").load(_path(settings, "fct_quake_revisions"))
    history = revisions.where(F.col("quake_id") == revised.quake_id).orderBy("updated_ms")
    last = history.collect()[-1]
    assert (last.updated_ms, last.revision_number) == (revised.updated_ms, history.count())

    # The same run again, its revised ranges included: every MERGE empty, no version.
    again = _cli(settings, "marts", "verify-idempotent", "--start", arrival.ingest_date.isoformat())
    assert again.returncode == 0, _output(again)
    assert "the rebuild committed no version (every MERGE was empty)" in " ".join(
        again.stdout.split()
    ), _output(again)
