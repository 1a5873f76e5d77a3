"""The marts' pure parts: the Flinn-Engdahl seeds, the profile's variables, the dbt namespace."""

from __future__ import annotations

import csv
import importlib
import itertools
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT, Settings
from marts.flinn_engdahl import Run, parse_runs, region_of
from marts.profiles import dbt_env, interval_vars

SEEDS = PROJECT_ROOT / "dbt" / "seeds"


def _runs() -> list[Run]:
    with (SEEDS / "fe_region_cells.csv").open() as handle:
        return [
            Run(
                r["quadrant"],
                int(r["abs_lat"]),
                int(r["abs_lon_from"]),
                int(r["abs_lon_to"]),
                int(r["fe_region_number"]),
            )
            for r in csv.DictReader(handle)
        ]


@pytest.mark.parametrize(
    ("lon", "lat", "number", "name"),
    [
        # ObsPy's documented examples of FlinnEngdahl.get_number / get_region.
        (12, 48, 543, "Germany"),
        (-60, -30, 133, "Northeastern Argentina"),
        # Edges: longitude -180 counts as 180; the equator and meridian as positive.
        (-180, 10, region_of(_runs(), 180, 10), None),
    ],
)
def test_a_point_falls_in_its_flinn_engdahl_region(
    lon: float, lat: float, number: int, name: str | None
) -> None:
    assert region_of(_runs(), lon, lat) == number
    if name is not None:
        with (SEEDS / "fe_regions.csv").open() as handle:
            names = {
                int(r["fe_region_number"]): r["fe_region_name"] for r in csv.DictReader(handle)
            }
        assert names[number] == name
        assert len(names) == 757


def test_every_grid_cell_has_exactly_one_region() -> None:
    runs = _runs()
    for quadrant in ("ne", "nw", "se", "sw"):
        for lat in range(91):
            band = sorted(
                (r for r in runs if r.quadrant == quadrant and r.lat == lat),
                key=lambda r: r.lon_from,
            )
            assert band[0].lon_from == 0 and band[-1].lon_to == 181
            assert all(a.lon_to == b.lon_from for a, b in itertools.pairwise(band))


def test_parse_runs_rejects_a_short_index() -> None:
    with pytest.raises(ValueError, match="not 4 x 91"):
        parse_runs("1 2 3", {})


def test_profile_variables_hold_no_secret(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from core.postgres import store_password

    settings = Settings(state_dir=tmp_path, lake_root=str(tmp_path / "lake"))
    store_password(settings, "metastore", SecretStr("never-in-a-profile"))
    env = dbt_env(settings)
    assert env["STREAMHOUSE_DBT_LOCATION_ROOT"] == f"{tmp_path}/lake/marts"
    assert env["STREAMHOUSE_DBT_WAREHOUSE_DIR"] == f"{tmp_path}/lake/_warehouse"
    assert not any("never-in-a-profile" in value for value in env.values())


def test_the_profile_keeps_the_settings_catalog_never_derby(tmp_path: Path) -> None:
    """dbt-spark's session calls enableHiveSupport(): without the catalog implementation
    passed through, an in-memory run (`make lint`) opened an embedded Derby metastore."""
    in_memory = Settings(state_dir=tmp_path, catalog={"kind": "in-memory"})  # type: ignore[arg-type]
    assert dbt_env(in_memory)["STREAMHOUSE_DBT_CATALOG_IMPLEMENTATION"] == "in-memory"
    profile = (PROJECT_ROOT / "dbt" / "profiles.yml").read_text()
    assert (
        "spark.sql.catalogImplementation: \"{{ env_var('STREAMHOUSE_DBT_CATALOG_IMPLEMENTATION'"
        in profile
    )


def test_the_repository_dbt_folder_does_not_shadow_dbt_core() -> None:
    """`dbt/` at the repository root (on sys.path when run from there) joins dbt-core's
    `dbt` package path (its __init__ extends __path__): no entry of ours may carry the
    name of a dbt-core module, and dbt-core's own modules must still come from it."""
    import dbt

    core_dir = Path(dbt.__file__).parent
    core_names = {p.stem for p in core_dir.iterdir()}
    ours = {p.stem for p in (PROJECT_ROOT / "dbt").iterdir()}
    assert not ours & core_names, f"dbt/ entries named like dbt-core modules: {ours & core_names}"
    for module in ("dbt.cli.main", "dbt.tests.util", "dbt.adapters.spark"):
        found = importlib.import_module(module)
        assert "site-packages" in str(found.__file__), f"{module} came from {found.__file__}"


def test_an_interval_is_explicit_and_ordered(tmp_path: Path) -> None:
    from datetime import date

    from core.errors import UserFacingError

    settings = Settings(state_dir=tmp_path)
    today = date(2026, 12, 4)
    # The daily run: today and the lookback, every bound explicit (dbt's partial parsing).
    assert interval_vars(settings, None, None, today) == {
        "start_date": "2026-12-04",
        "end_date": "2026-12-05",
        "lookback_days": 3,
    }
    backfill = interval_vars(settings, date(2026, 11, 1), None, today)
    assert (backfill["start_date"], backfill["end_date"]) == ("2026-11-01", "2026-12-05")
    one_day = interval_vars(settings, None, date(2026, 11, 2), today)
    assert (one_day["start_date"], one_day["end_date"]) == ("2026-11-01", "2026-11-02")
    with pytest.raises(UserFacingError, match="not after --start"):
        interval_vars(settings, date(2026, 11, 2), date(2026, 11, 2), today)


def test_build_arguments_leave_fresh_seeds_and_first_unit_tests_out() -> None:
    from marts.build import build_arguments

    assert build_arguments(
        full_refresh=False, select=[], fresh_seeds=[], first=False, unit_tests=True
    ) == ["build"]
    # Asked for on a first build, the unit tests run after it (UNIT_TESTS).
    assert build_arguments(
        full_refresh=True,
        select=["fct_quakes+"],
        fresh_seeds=["fe_regions"],
        first=True,
        unit_tests=True,
    ) == [
        "build",
        "--full-refresh",
        "--select",
        "fct_quakes+",
        "--exclude",
        "fe_regions",
        "--exclude-resource-type",
        "unit_test",
    ]


def test_a_production_build_leaves_the_unit_tests_out() -> None:
    """dbt's unit tests have static inputs: a build runs them only when asked."""
    from marts.build import build_arguments

    for first in (False, True):
        assert build_arguments(full_refresh=False, select=[], fresh_seeds=[], first=first) == [
            "build",
            "--exclude-resource-type",
            "unit_test",
        ]


def test_build_arguments_leave_unchanged_static_marts_out_cautiously() -> None:
    from marts.build import build_arguments

    assert build_arguments(
        full_refresh=False,
        select=[],
        fresh_seeds=["fe_regions"],
        first=False,
        unchanged=["dim_date", "dim_region"],
        unit_tests=True,
    ) == [
        "build",
        "--exclude",
        "fe_regions",
        "dim_date",
        "dim_region",
        # Eager exclusion would take the facts' relationship tests to dim_date with it.
        "--indirect-selection",
        "cautious",
    ]


def test_the_static_marts_are_those_with_no_source_upstream() -> None:
    from marts.static import static_models

    assert static_models(PROJECT_ROOT / "dbt") == {
        "dim_date": [],
        "dim_magnitude_type": ["usgs_magnitude_types"],
        "dim_region": ["fe_region_cells", "fe_regions"],
    }


def _project(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "seeds").mkdir()
    (root / "macros").mkdir()
    (root / "dbt_project.yml").write_text("vars: {first_day: '2000-01-01'}\n")
    (root / "macros" / "m.sql").write_text("{% macro m() %}1{% endmacro %}\n")
    (root / "seeds" / "codes.csv").write_text("code\na\n")
    (root / "seeds" / "other.csv").write_text("x\n1\n")
    models = {
        "dim_codes": "select * from {{ ref('codes') }}",
        # Static through another static model.
        "dim_codes_upper": 'select upper(code) from {{ ref("dim_codes") }}',
        "stg_events": "select * from {{ source('lake', 'events') }}",
        # A seed and a model that reads the lake: not static.
        "fct_events": "select * from {{ ref('stg_events') }} join {{ ref('codes') }}",
    }
    for name, sql in models.items():
        (root / "models" / f"{name}.sql").write_text(sql + "\n")
    return root


def test_a_model_is_static_when_every_parent_is_a_seed_or_static(tmp_path: Path) -> None:
    from marts.static import static_models

    assert static_models(_project(tmp_path)) == {
        "dim_codes": ["codes"],
        "dim_codes_upper": ["codes"],
    }


def test_a_static_fingerprint_follows_its_inputs_and_not_the_interval(tmp_path: Path) -> None:
    from marts.static import fingerprints

    root = _project(tmp_path)
    daily = {"start_date": "2026-12-01", "end_date": "2026-12-02", "lookback_days": 3}
    base = fingerprints(root, daily)
    # Another day, or a seed it does not read: the same rows, the same fingerprint.
    assert fingerprints(root, {**daily, "start_date": "2026-12-02"}) == base
    (root / "seeds" / "other.csv").write_text("x\n2\n")
    assert fingerprints(root, daily) == base
    changes = [
        lambda: (root / "seeds" / "codes.csv").write_text("code\nb\n"),
        lambda: (root / "models" / "dim_codes.sql").write_text("select 2\n"),
        lambda: (root / "macros" / "m.sql").write_text("{% macro m() %}2{% endmacro %}\n"),
        lambda: (root / "dbt_project.yml").write_text("vars: {first_day: '2001-01-01'}\n"),
        lambda: (root / "models" / "_models.yml").write_text("version: 2\n"),
    ]
    seen = [base["dim_codes"]]
    for change in changes:
        change()
        now = fingerprints(root, daily)["dim_codes"]
        assert now not in seen, change
        seen.append(now)
    assert fingerprints(root, {**daily, "first_day": "2002-01-01"})["dim_codes"] not in seen


def test_seed_checksums_change_with_the_csv(tmp_path: Path) -> None:
    from marts.seeds import seed_checksums

    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "a.csv").write_text("x\n1\n")
    before = seed_checksums(tmp_path)
    (tmp_path / "seeds" / "a.csv").write_text("x\n2\n")
    after = seed_checksums(tmp_path)
    assert set(before) == {"a"} and before["a"] != after["a"]
    assert set(seed_checksums(PROJECT_ROOT / "dbt")) == {
        "fe_region_cells",
        "fe_regions",
        "usgs_magnitude_types",
        "usgs_networks",
    }


def test_the_magnitude_type_seed_has_one_row_per_feed_code() -> None:
    """Every magType the fixture's feed carries is a documented type (the dim's key)."""
    import json

    with (SEEDS / "usgs_magnitude_types.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    codes = [r["magnitude_type"] for r in rows]
    assert len(codes) == len(set(codes)) and all(c == c.lower() for c in codes)
    feed = json.loads((PROJECT_ROOT / "tests/data/usgs/feed_7_day_m1.geojson").read_text())
    assert {f["properties"]["magType"].lower() for f in feed["features"]} <= set(codes)
    assert not any("'" in value for row in rows for value in row.values())  # seeds' INSERT


def test_spark_metric_values_are_read_as_numbers() -> None:
    from marts.bench import _number, _written

    assert _number("1,234") == 1234
    assert _number("total (min, med, max)\n12 (1, 2, 9)") == 12
    assert _number(None) == 0
    merge = {
        "operation": "MERGE",
        "numTargetRowsInserted": "5",
        "numTargetRowsUpdated": "2",
        "numTargetRowsCopied": "10",
        "numTargetFilesAdded": "3",
        "numTargetFilesRemoved": "1",
    }
    replace = {
        "operation": "CREATE OR REPLACE TABLE AS SELECT",
        "numOutputRows": "7",
        "numFiles": "2",
    }
    assert _written([merge, replace]) == (24, 5, 1)


def test_the_bench_compares_medians_and_the_empty_day_floor() -> None:
    from marts.bench import EMPTY_DAY, MartsBenchResult, RunFigures

    def run(kind: str, seconds: float) -> RunFigures:
        return RunFigures(kind, seconds, {}, {}, {}, {}, {}, {}, {})

    result = MartsBenchResult("c", 30, 1, ("a", "b"), 3, 1, 0, 0, 0, 0)
    assert result.incremental_share == 0.0 and result.floor_share == 0.0  # nothing ran
    result.runs = [
        run("full refresh", 40.0), run("full refresh", 20.0), run("full refresh", 30.0),
        run("incremental", 12.0), run("incremental", 9.0), run("incremental", 15.0),
        run(EMPTY_DAY, 6.0), run(EMPTY_DAY, 9.0), run(EMPTY_DAY, 3.0),
    ]  # fmt: skip
    assert result.median("full refresh") == 30.0
    assert result.incremental_share == 12.0 / 30.0
    assert result.floor_share == 6.0 / 30.0
    result.runs = result.runs[:2]
    assert result.median("full refresh") == 30.0  # of two runs, their mean


def test_the_bench_bounds_a_delta_source_batch_to_a_day_of_bronze_files(tmp_path: Path) -> None:
    from marts.bench import bench_files_per_trigger

    bronze = tmp_path / "quake_changes"
    for day in range(3):
        partition = bronze / f"ingest_date=2026-11-0{day + 1}"
        partition.mkdir(parents=True)
        for part in range(4):
            (partition / f"part-{part}.parquet").write_bytes(b"")
    (bronze / "_delta_log").mkdir()
    (bronze / "_delta_log" / "00000000000000000010.checkpoint.parquet").write_bytes(b"")
    assert bench_files_per_trigger(bronze, 3) == 4  # the log's checkpoint is not data
    assert bench_files_per_trigger(bronze, 30) == 1


def test_the_diagram_types_are_one_word() -> None:
    from marts.diagram import mermaid_er

    manifest = {
        "nodes": {
            "model.p.fct_a": {
                "resource_type": "model",
                "name": "fct_a",
                "columns": {"x": {"name": "x"}, "y": {"name": "y"}},
                "depends_on": {"nodes": []},
            }
        }
    }
    catalog = {
        "nodes": {
            "model.p.fct_a": {
                "columns": {"X": {"type": "decimal(24,6)"}, "Y": {"type": "array<string>"}}
            }
        }
    }
    assert mermaid_er(manifest, catalog) == (
        "erDiagram\n    fct_a {\n        decimal x\n        array y\n    }\n"
    )


def test_the_diagram_spells_a_type_alike_from_the_yaml_or_the_built_table() -> None:
    """YAML's integer/long and the table's int/bigint render the same (the committed
    diagram went stale depending on which one a run happened to read)."""
    from marts.diagram import mermaid_er

    columns = {"n": {"name": "n", "data_type": "integer"}, "g": {"name": "g", "data_type": "long"}}
    manifest = {
        "nodes": {
            "model.p.dim_a": {
                "resource_type": "model",
                "name": "dim_a",
                "columns": columns,
                "depends_on": {"nodes": []},
            }
        }
    }
    catalog = {
        "nodes": {"model.p.dim_a": {"columns": {"N": {"type": "int"}, "G": {"type": "bigint"}}}}
    }
    assert mermaid_er(manifest) == mermaid_er(manifest, catalog)
    assert "int n" in mermaid_er(manifest) and "bigint g" in mermaid_er(manifest)


def test_missing_sources_are_told_before_spark_starts(tmp_path: Path) -> None:
    """A local lake is checked on disk: `marts build` on an empty lake starts no JVM."""
    from marts.runner import SOURCE_TABLES, local_missing_sources

    settings = Settings(state_dir=tmp_path, lake_root=str(tmp_path / "lake"))
    assert local_missing_sources(settings) == [
        "lake.quake_changes",
        "lake.quakes",
        "lake.quake_windows_1m",
        "lake.quake_windows_1h",
    ]
    for table in SOURCE_TABLES[:3]:
        (Path(table.path(settings.lake_uri)) / "_delta_log").mkdir(parents=True)
    assert local_missing_sources(settings) == ["lake.quake_windows_1h"]
    as_uri = settings.model_copy(update={"lake_root": f"file:{tmp_path}/lake"})
    assert local_missing_sources(as_uri) == ["lake.quake_windows_1h"]
    remote = settings.model_copy(update={"lake_root": "s3a://bucket/lake"})
    assert local_missing_sources(remote) is None
