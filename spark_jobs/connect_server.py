"""The stack's ``spark-connect`` service: ``python -m spark_jobs.connect_server``.

A driver built like every job's (``build_spark``) with Spark's Connect plugin,
serving Airflow's tasks until it is asked to stop (SIGTERM or SIGINT). Its
log is its service log. See ``spark_jobs/connect.py``.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

from core.settings import Settings
from spark_jobs.connect import (
    SERVICE,
    TOKEN_ENV,
    client_url,
    server_config,
    server_token,
    serving_file,
)
from spark_jobs.session import build_spark


def main() -> None:
    settings = Settings()
    token = server_token(settings)
    if token is not None:
        # Read by the server from its environment: never on the JVM's command line.
        os.environ[TOKEN_ENV] = token
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    marker = serving_file(settings)
    marker.unlink(missing_ok=True)
    spark = build_spark(settings, SERVICE, extra_config=server_config(settings))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{os.getpid()}\n")
    auth = "token required" if token is not None else "no authentication"
    print(f"{SERVICE}: serving {client_url(settings)} ({auth})", flush=True)
    try:
        stop.wait()
    finally:
        marker.unlink(missing_ok=True)
        spark.stop()


if __name__ == "__main__":
    main()
