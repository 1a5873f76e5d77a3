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
    assert interval_vars(None, None) == {}


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
