"""Seeds of ``dim_region`` from the Flinn-Engdahl regionalization's published tables.

The Flinn-Engdahl (F-E) seismic and geographic regions (Flinn, Engdahl and
Hill 1974; the 1995 revision, Young et al. 1996, BSSA 86(5)) divide the Earth
into 757 regions on a one-degree grid; USGS and the ISC name events by them.
The grid is published as four quadrant files (``nesect.asc`` ...), each a list,
per whole degree of absolute latitude, of (first absolute longitude, region
number) runs, with ``quadsidx.asc`` giving how many runs each latitude has,
and ``names.asc`` the region names in number order. ObsPy ships these files
(``obspy/geodetics/data``); this module turns them into two dbt seeds:

- ``fe_regions.csv``: region number, name;
- ``fe_region_cells.csv``: quadrant, absolute latitude, the absolute longitude
  range [from, to) and the region, one row per run (5,958 rows instead
  of 64,800 cells).

Run once, the output is committed: ``python -m marts.flinn_engdahl DATA_DIR dbt/seeds``.
A point's region: quadrant by the signs (0 counts as positive, -180 as 180),
then the run holding ``floor(|lon|)`` at ``floor(|lat|)``, as ObsPy's
``FlinnEngdahl.get_number`` reads it.
"""

from __future__ import annotations

import csv
import string
import sys
from dataclasses import dataclass
from pathlib import Path

QUADRANTS = ("ne", "nw", "se", "sw")


@dataclass(frozen=True)
class Run:
    """Region ``region`` covers ``lon_from <= floor(|lon|) < lon_to`` at ``floor(|lat|) == lat``."""

    quadrant: str
    lat: int
    lon_from: int
    lon_to: int
    region: int


def _numbers(text: str) -> list[int]:
    return [int(token) for token in text.split()]


def parse_runs(quads_index: str, sections: dict[str, str]) -> list[Run]:
    """The runs of every quadrant from ``quadsidx.asc`` and the four ``*sect.asc`` texts."""
    counts = _numbers(quads_index)
    if len(counts) != 4 * 91:
        raise ValueError(f"quadsidx holds {len(counts)} counts, not 4 x 91")
    runs = []
    for q, quadrant in enumerate(QUADRANTS):
        pairs = _numbers(sections[quadrant])
        lons, regions = pairs[0::2], pairs[1::2]
        start = 0
        for lat in range(91):
            count = counts[q * 91 + lat]
            band = list(
                zip(lons[start : start + count], regions[start : start + count], strict=True)
            )
            start += count
            for i, (lon_from, region) in enumerate(band):
                lon_to = band[i + 1][0] if i + 1 < len(band) else 181
                runs.append(Run(quadrant, lat, lon_from, lon_to, region))
        if start != len(lons):
            raise ValueError(f"{quadrant}: {len(lons) - start} runs left over")
    return runs


def region_of(runs: list[Run], lon: float, lat: float) -> int:
    """The region number of a point (the same rule the SQL of ``dim_region`` applies)."""
    if lon == -180:
        lon = 180
    quadrant = ("n" if lat >= 0 else "s") + ("e" if lon >= 0 else "w")
    a_lat, a_lon = int(abs(lat)), int(abs(lon))
    for run in runs:
        if run.quadrant == quadrant and run.lat == a_lat and run.lon_from <= a_lon < run.lon_to:
            return run.region
    raise ValueError(f"no region for {lon}, {lat}")


def write_seeds(data_dir: Path, seeds_dir: Path) -> tuple[int, int]:
    """Write both seeds from the F-E files in ``data_dir``; (regions, runs) written."""
    names = [line.strip() for line in (data_dir / "names.asc").read_text().splitlines()]
    names = [name for name in names if name]
    runs = parse_runs(
        (data_dir / "quadsidx.asc").read_text(),
        {q: (data_dir / f"{q}sect.asc").read_text() for q in QUADRANTS},
    )
    with (seeds_dir / "fe_regions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fe_region_number", "fe_region_name"])
        for number, name in enumerate(names, start=1):
            # dbt-spark writes seeds as INSERT ... VALUES without escaping quotes:
            # an apostrophe (D'Entrecasteaux) breaks the statement.
            writer.writerow([number, string.capwords(name).replace("'", "\u2019")])
    with (seeds_dir / "fe_region_cells.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["quadrant", "abs_lat", "abs_lon_from", "abs_lon_to", "fe_region_number"])
        for run in runs:
            writer.writerow([run.quadrant, run.lat, run.lon_from, run.lon_to, run.region])
    return len(names), len(runs)


if __name__ == "__main__":
    regions, cells = write_seeds(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{regions} regions, {cells} longitude runs")
