"""The dbt marts against the real stack: one build, reused by every assertion (CI budget).

The stack's poller and stream fill the lake from the simulator's fixture; a
`streamhouse marts build --full-refresh` (its own JVM, the shared metastore,
the stream still running) builds every model, seed, data and unit test; the
marts are then compared with an independent computation from silver and
bronze, rebuilt to prove idempotency with Delta time travel, and documented.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F  # noqa: N812

from core.settings import PROJECT_ROOT, Settings, settings_env
from lake.tables import BRONZE_QUAKE_CHANGES, QUAKE_WINDOWS_1H, SILVER_QUAKES
from marts.profiles import dbt_work_dir, marts_root


def _cli(settings: Settings, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamhouse.cli", *args],
        env=settings_env(settings),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def built(running_stack: Settings) -> Settings:
    """The stack's lake, every source table present, and the marts built once."""
    needed = [BRONZE_QUAKE_CHANGES, SILVER_QUAKES, QUAKE_WINDOWS_1H]
    deadline = time.monotonic() + 300
    while not all((Path(t.path(running_stack.lake_uri)) / "_delta_log").is_dir() for t in needed):
        assert time.monotonic() < deadline, "the stream did not create its tables"
        time.sleep(3)
    result = _cli(running_stack, "marts", "build", "--full-refresh")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return running_stack


def _mart(spark: SparkSession, settings: Settings, name: str) -> Any:
    return spark.read.format("delta").load(f"{marts_root(settings)}/{name}")


def test_marts_equal_an_independent_computation(built: Settings, spark: SparkSession) -> None:
    """fct_quakes = silver without tombstones; fct_quake_revisions = bronze's distinct versions."""
    silver = spark.read.format("delta").load(SILVER_QUAKES.path(built.lake_uri))
    bronze = spark.read.format("delta").load(BRONZE_QUAKE_CHANGES.path(built.lake_uri))
    quakes = _mart(spark, built, "fct_quakes")
    revisions = _mart(spark, built, "fct_quake_revisions")
    # The simulator is static in the test stack: the lake does not move after the build.
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


def test_a_rebuild_changes_no_mart(built: Settings) -> None:
    """verify-idempotent: versions compared with time travel, both ways, all empty."""
    result = _cli(
        built, "marts", "verify-idempotent", "--start", "2019-02-01", "--end", "2019-03-01"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "idempotent" in result.stdout
    assert "marts.fct_quake_revisions" in result.stdout


def test_docs_catalog_holds_every_model_with_its_columns(built: Settings) -> None:
    result = _cli(built, "marts", "docs")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    target = dbt_work_dir(built) / "target"
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    assert (target / "index.html").is_file()
    models = {k: v for k, v in manifest["nodes"].items() if v["resource_type"] == "model"}
    assert {m["name"] for m in models.values()} >= {
        "fct_quake_revisions",
        "fct_quakes",
        "fct_network_activity_daily",
        "dim_network",
        "dim_magnitude_type",
        "dim_region",
        "dim_date",
    }
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


def test_a_missing_source_is_one_sentence(running_stack: Settings, tmp_path: Path) -> None:
    empty = running_stack.model_copy(update={"lake_root": str(tmp_path / "no-lake")})
    result = _cli(empty, "marts", "build", timeout=300)
    assert result.returncode == 1
    assert "lake.quake_changes" in result.stderr and "does not exist yet" in result.stderr
    assert "Traceback" not in result.stderr
