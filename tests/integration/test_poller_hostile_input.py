"""Hostile responses reach the real poller process: each ends in the DLQ with its reason, and the
process stays alive and goes on polling (real Kafka, registry, simulator over loopback).

A 200 MB body, a NaN literal in a record and a body nested 10,000 levels deep are
served in turn; an event time in the year 9999 is the streaming job's to
quarantine (tests/integration/test_streaming_faults.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from core.settings import PROJECT_ROOT, Settings, settings_env
from producers.simulator.server import SimulatorServer

from .test_poller_exactly_once import admin, change_versions, free_port, read_topic, wait_for


def test_hostile_bodies_are_dead_lettered_and_the_poller_lives_on(
    isolated: Settings, simulator: SimulatorServer, tmp_path: Path
) -> None:
    metrics_port = free_port()
    settings = isolated.model_copy(
        update={
            "source": isolated.source.model_copy(
                update={"base_url": simulator.query_url, "timeout_s": 30.0}
            ),
            "runtime": isolated.runtime.model_copy(
                update={
                    "ports": isolated.runtime.ports.model_copy(
                        update={"poller_metrics": metrics_port}
                    )
                }
            ),
        }
    )
    log = tmp_path / "poller.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamhouse.cli", "poll", "--interval-s", "0.5"],
            env=settings_env(settings), cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: len(change_versions(settings)) >= 1304, timeout_s=90)
        admin(simulator, "/admin/dynamics", {"changes_per_s": 4.0})
        expected = {
            "huge_body": ("page", "over the limit"),
            "deep_nesting": ("page", "nests deeper than 64 levels"),
            # A NaN in a record the poller already sent is dropped as a re-read
            # before it is mapped: serve it until a page with a new version comes.
            "nan": ("record", "NaN is not a number JSON allows"),
        }
        for fault, (stage, reason) in expected.items():
            deadline = time.monotonic() + 90
            while not _has_letter(settings, stage, reason):
                assert time.monotonic() < deadline, f"no dead letter for {fault}"
                admin(simulator, "/admin/faults", {"queue": [fault], "huge_body_mb": 200})
                time.sleep(2)
            assert process.poll() is None, log.read_text()[-3000:]
        produced_before = len(change_versions(settings))
        time.sleep(3)
        # Alive and still polling: the changes that keep coming are produced.
        wait_for(lambda: len(change_versions(settings)) > produced_before, timeout_s=60)
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).status_code == 200
        admin(simulator, "/admin/dynamics", {"changes_per_s": 0})
    finally:
        process.terminate()
        process.wait(30)
    assert "Traceback" not in log.read_text()

    letters = read_topic(settings, settings.kafka.dead_letter_topic).messages
    assert _has_letter(settings, "page", "body of 209715")  # 200 MiB declared, never read
    for _, value, headers in letters:
        assert len(value or b"") <= settings.source.dead_letter_max_bytes
        assert headers["source"].decode() == settings.source.name
    committed = change_versions(settings)
    assert [v for v, n in Counter(committed).items() if n > 1] == []


def _has_letter(settings: Settings, stage: str, reason: str) -> bool:
    return any(
        headers["stage"].decode() == stage and reason in headers["reason"].decode()
        for _, _, headers in read_topic(settings, settings.kafka.dead_letter_topic).messages
    )
