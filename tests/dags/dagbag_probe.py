"""Load the DAG folder in a fresh interpreter and write what Airflow sees as JSON (argv[2]).

Run by test_dag_integrity.py in a subprocess: Airflow configures logging and
global state when imported, which must not leak into the other tests. While
the DAG files are parsed, opening a network connection raises: parsing does
no I/O beyond reading the files.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def _refuse(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("a DAG file opened a network connection while it was parsed")


def main(dags_folder: str, output: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    before = set(sys.modules)
    socket.socket.connect = _refuse  # type: ignore[method-assign]
    began = time.perf_counter()
    bag = DagBag(dag_folder=dags_folder)
    seconds = time.perf_counter() - began
    imported = sorted(
        {name.split(".")[0] for name in set(sys.modules) - before}
        & {"pyspark", "great_expectations", "dbt", "delta", "pyarrow", "psycopg", "confluent_kafka"}
    )
    dags = {}
    for dag_id, dag in bag.dags.items():
        deadline = dag.deadline
        deadlines = deadline if isinstance(deadline, list) else ([deadline] if deadline else [])
        dags[dag_id] = {
            "tags": sorted(dag.tags),
            "timetable": type(dag.timetable).__name__,
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "dag_failure_callbacks": len(dag.on_failure_callback or [])
            if isinstance(dag.on_failure_callback, list)
            else int(dag.on_failure_callback is not None),
            "params": sorted(dag.params.keys()),
            "deadlines": [
                {
                    "reference": type(d.reference).__name__,
                    "interval_s": d.interval.total_seconds(),
                    "callback": d.callback.path
                    if hasattr(d.callback, "path")
                    else str(d.callback.serialize()),
                }
                for d in deadlines
            ],
            "doc_md": bool(dag.doc_md),
            "tasks": {
                task.task_id: {
                    "owner": task.owner,
                    "retries": task.retries,
                    "retry_exponential_backoff": bool(task.retry_exponential_backoff),
                    "execution_timeout_s": task.execution_timeout.total_seconds()
                    if task.execution_timeout
                    else None,
                    "failure_callbacks": len(task.on_failure_callback or [])
                    if isinstance(task.on_failure_callback, list)
                    else int(task.on_failure_callback is not None),
                    "operator": type(task).__name__,
                    "deferrable": bool(getattr(task, "deferrable", False)),
                    "upstream": sorted(task.upstream_task_ids),
                }
                for task in dag.tasks
            },
        }
    with open(output, "w") as handle:
        json.dump(
            {
                "import_errors": {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()},
                "seconds": seconds,
                "file_seconds": {
                    str(stat.file): stat.duration.total_seconds() for stat in bag.dagbag_stats
                },
                "heavy_imports": imported,
                "dags": dags,
            },
            handle,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
