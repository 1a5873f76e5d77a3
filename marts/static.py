"""Marts that read no lake table are built again only when what they derive from changes.

A model with no source among its ancestors (here ``dim_date``, ``dim_magnitude_type``
and ``dim_region``: seeds and vars only) gives the same rows on every run of an
unchanged project. A daily run would still plan and run its MERGE to change nothing:
4-5 s each in ``streamhouse bench marts``, on a run of 14 s. So, as the seeds do
(``marts.seeds``), each such mart records a fingerprint of everything its rows come
from in a table property, and a build leaves out the ones whose fingerprint is still
the recorded one. The facts' relationship tests to them still run
(``--indirect-selection cautious``: only the tests whose every parent is left out go).

The fingerprint covers the model's SQL, the CSVs of the seeds it reads, the project
file (its vars), the models' YAML (tests, docs, configs), the macros, and the vars a
run passes other than the interval's.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marts.seeds import recorded_property

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Table property holding the fingerprint a static mart was last built from.
STATIC_FINGERPRINT_PROPERTY = "streamhouse.inputs_sha256"
#: The vars that only say which interval a run covers: a static mart never reads them.
INTERVAL_VARS = frozenset({"start_date", "end_date", "lookback_days", "revised_ranges", "zorder"})

_REF = re.compile(r"""\bref\(\s*['"](\w+)['"]\s*\)""")
_SOURCE = re.compile(r"\bsource\(")


def _models(project_dir: Path) -> dict[str, str]:
    """Model name -> its SQL, for every model of the project."""
    return {p.stem: p.read_text() for p in sorted((project_dir / "models").rglob("*.sql"))}


def _seeds(project_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted((project_dir / "seeds").glob("*.csv"))}


def static_models(project_dir: Path) -> dict[str, list[str]]:
    """The models with no source among their ancestors -> the seeds they read (transitively)."""
    sql = _models(project_dir)
    seeds = _seeds(project_dir)
    refs = {name: set(_REF.findall(text)) for name, text in sql.items()}
    static: dict[str, set[str]] = {}
    changed = True
    while changed:  # a model is static once every model it refers to is
        changed = False
        for name, text in sql.items():
            if name in static or _SOURCE.search(text):
                continue
            parents = refs[name]
            if all(p in seeds or p in static for p in parents):
                read: set[str] = set()
                for parent in parents:
                    read |= {parent} if parent in seeds else static[parent]
                static[name] = read
                changed = True
    return {name: sorted(read) for name, read in sorted(static.items())}


def fingerprint(project_dir: Path, model: str, seeds: list[str], dbt_vars: dict[str, Any]) -> str:
    """SHA-256 of what the rows of ``model`` derive from."""
    digest = hashlib.sha256()
    files = [next((project_dir / "models").rglob(f"{model}.sql"))]
    files += [project_dir / "seeds" / f"{seed}.csv" for seed in seeds]
    files += [project_dir / "dbt_project.yml"]
    files += sorted((project_dir / "models").rglob("*.yml"))  # tests, docs and configs
    files += sorted((project_dir / "macros").rglob("*.sql"))
    for path in files:
        digest.update(str(path.relative_to(project_dir)).encode())
        digest.update(path.read_bytes())
    passed = {k: v for k, v in (dbt_vars or {}).items() if k not in INTERVAL_VARS}
    digest.update(json.dumps(passed, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def fingerprints(project_dir: Path, dbt_vars: dict[str, Any]) -> dict[str, str]:
    """Static mart -> its fingerprint for a run with ``dbt_vars``."""
    return {
        model: fingerprint(project_dir, model, seeds, dbt_vars)
        for model, seeds in static_models(project_dir).items()
    }


def unchanged_static(spark: SparkSession, schema: str, prints: dict[str, str]) -> list[str]:
    """The static marts built from exactly these inputs already."""
    return [
        model
        for model, value in prints.items()
        if recorded_property(spark, f"{schema}.{model}", STATIC_FINGERPRINT_PROPERTY) == value
    ]


def mark_built(spark: SparkSession, schema: str, prints: dict[str, str], built: list[str]) -> None:
    """Record on each static mart just built the fingerprint it was built from.

    Only a value that differs is written: setting a property commits a Delta version.
    """
    for model in built:
        if model not in prints:
            continue
        table = f"{schema}.{model}"
        if recorded_property(spark, table, STATIC_FINGERPRINT_PROPERTY) == prints[model]:
            continue
        spark.sql(
            f"ALTER TABLE {table} SET TBLPROPERTIES "
            f"('{STATIC_FINGERPRINT_PROPERTY}' = '{prints[model]}')"
        )
