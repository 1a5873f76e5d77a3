"""How the Data Docs index's cost grows with the validation results a site holds.

GX rebuilds ``index.html`` after every checkpoint run and reads back each result the
index lists (quality/README.md). This validates a small silver table on local Spark
(the quality tests' rows, in a temporary state folder), copies that real result into the
results store and onto the site as earlier days until the site holds each of the given
counts, and times one suite's validation there, index unbounded (median of ``--runs``).
At the largest count it then alternates the bounded (``quality.docs_index_limit``) and
the unbounded index, side by side.

    .venv/bin/python -m benchmarks.gx_docs_index --results 5 103 403 1003

Writes ``benchmarks/results/gx-docs-index.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from core.intervals import Interval
from core.settings import DOCS_INDEX_LIMIT, PROJECT_ROOT, Settings
from lake.tables import BRONZE_QUAKE_CHANGES, SILVER_QUAKES
from monitoring.notify import Origin
from quality.context import docs_dir, results_dir
from quality.run import validate_layer
from spark_jobs.session import build_spark
from tests.quality.lake_rows import bronze, quake, silver

SUITE = "silver_quakes"
DAY = Interval.of_day(date(2019, 2, 15))
ORIGIN = Origin(command="benchmarks.gx_docs_index")
OUTPUT = PROJECT_ROOT / "benchmarks" / "results" / "gx-docs-index.json"
#: Far above any count measured here: the index lists every result.
UNBOUNDED = 10**9


def _with_limit(settings: Settings, limit: int) -> Settings:
    quality = settings.quality.model_copy(update={"docs_index_limit": limit})
    return settings.model_copy(update={"quality": quality})


def _copy_as_earlier_days(settings: Settings, seed: str, first: int, last: int) -> None:
    """The seed run's result and page, copied as days ``first`` .. ``last - 1`` of 2020."""
    stored = results_dir(settings) / SUITE
    site = docs_dir(settings) / "validations" / SUITE
    (result,) = (stored / seed).iterdir()
    (page,) = (site / seed).iterdir()
    for n in range(first, last):
        run_time = (datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=n)).strftime(
            "%Y%m%dT%H%M%S.%fZ"
        )
        shutil.copytree(result, stored / f"day{n}" / run_time)
        shutil.copytree(page, site / f"day{n}" / run_time)


def _timed(settings: Settings, spark: object, run_name: str) -> float:
    began = time.perf_counter()
    validate_layer(spark, settings, "silver", DAY, origin=ORIGIN, run_name=run_name)  # type: ignore[arg-type]
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, nargs="+", default=[5, 103, 403, 1003])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--side-by-side-runs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if sorted(args.results) != args.results or args.results[0] < 2:
        parser.error("--results: give increasing counts of 2 or more")

    folder = Path(tempfile.mkdtemp(prefix="gx-docs-index-"))
    settings = Settings(
        state_dir=folder / "state",
        lake_root=str(folder / "lake"),
        catalog={"kind": "in-memory"},
        # No Pushgateway is wanted here: the push fails quietly, the verdict stands.
        monitoring={"pushgateway_url": "http://127.0.0.1:9"},
    )
    unbounded = _with_limit(settings, UNBOUNDED)
    spark = build_spark(settings, "gx-docs-index", log_file=folder / "driver.log")
    rows = bronze(spark, [quake(f"ci{i}", i * 3_000_000) for i in range(20)])
    rows.write.format("delta").partitionBy("ingest_date").save(
        BRONZE_QUAKE_CHANGES.path(settings.lake_uri)
    )
    silver(rows).write.format("delta").save(SILVER_QUAKES.path(settings.lake_uri))
    _timed(unbounded, spark, "seed")  # the JVM's first validation: not measured
    on_site, growth = 1, []
    for count in args.results:
        # Each timed run adds its own result: top up to the count before each.
        times = []
        for run in range(args.runs):
            _copy_as_earlier_days(settings, "seed", on_site, count)
            on_site = max(on_site, count)
            times.append(_timed(unbounded, spark, f"at{count}run{run}"))
            on_site += 1
        growth.append({"results": count, "median_s": statistics.median(times), "runs_s": times})
        print(f"{count:>6} results, index unbounded: {statistics.median(times):.2f} s", flush=True)
    side: dict[str, list[float]] = {"bounded": [], "unbounded": []}
    for run in range(args.side_by_side_runs):
        for name, chosen in (("bounded", settings), ("unbounded", unbounded)):
            side[name].append(_timed(chosen, spark, f"side{run}{name}"))
    index_bytes = (docs_dir(settings) / "index.html").stat().st_size
    for name, times in side.items():
        print(
            f"side by side at {on_site} results, {name}: "
            f"{statistics.median(times):.2f} s (median of {len(times)})",
            flush=True,
        )
    report = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "suite": SUITE,
        "limit": DOCS_INDEX_LIMIT,
        "growth_unbounded": growth,
        "side_by_side": {
            "results": on_site,
            **{name: {"median_s": statistics.median(t), "runs_s": t} for name, t in side.items()},
        },
        "index_bytes_after": index_bytes,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)
    spark.stop()
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
