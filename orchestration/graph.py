"""A DAG's graph as an image, drawn by Airflow's own renderer (what ``airflow dags show
--save`` draws), from the DAG files, with no metadata database.

``airflow dags show`` reads the serialized DAG from the metadata database, so
it needs the stack's Airflow to have parsed the file first; this parses
``dags/`` with a ``DagBag`` and serializes the DAG the same way the
dag-processor does, then renders it. Graphviz's ``dot`` (Debian's graphviz)
draws the file; the format is the output file's suffix.

Run as ``python -m orchestration.graph DAG_ID OUT`` in Airflow's environment
(``streamhouse airflow graph``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from core.errors import UserFacingError
from core.settings import PROJECT_ROOT


def dot_source(dag_id: str, dags_folder: Path = PROJECT_ROOT / "dags") -> str:
    """The DOT text Airflow renders for ``dag_id``."""
    return str(_render(dag_id, dags_folder).source)


def save(dag_id: str, out: Path, dags_folder: Path = PROJECT_ROOT / "dags") -> Path:
    """Draw ``dag_id``'s graph into ``out`` (png, svg, pdf: its suffix); the file."""
    if shutil.which("dot") is None:
        raise UserFacingError(
            "Graphviz's dot is not on PATH: run `make install` (it installs Debian's graphviz)."
        )
    fmt = out.suffix.lstrip(".") or "png"
    out.parent.mkdir(parents=True, exist_ok=True)
    _render(dag_id, dags_folder).render(outfile=out, format=fmt, cleanup=True)
    return out


def _render(dag_id: str, dags_folder: Path):  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.dot_renderer import render_dag

    bag = DagBag(dag_folder=str(dags_folder))
    if bag.import_errors:
        raise UserFacingError(f"the DAG files do not import: {bag.import_errors}")
    if dag_id not in bag.dags:
        raise UserFacingError(f"no DAG {dag_id!r} in {dags_folder}: choose from {sorted(bag.dags)}")
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(bag.dags[dag_id]))
    return render_dag(serialized)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m orchestration.graph DAG_ID OUT", file=sys.stderr)
        return 2
    try:
        print(save(argv[0], Path(argv[1])))
    except UserFacingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
