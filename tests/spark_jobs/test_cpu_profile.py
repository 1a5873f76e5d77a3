"""The benchmark's CPU profile: per-process CPU over time, and bronze's rows split by it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from spark_jobs import cpu_profile
from spark_jobs.cpu_profile import CpuSample

START = 1_700_000_000_000


def test_a_tree_s_cpu_counts_children_born_in_between_and_not_those_that_ended() -> None:
    before = {(1, 100.0): 10.0, (2, 100.0): 5.0, (3, 100.0): 7.0}
    now = {(1, 100.0): 10.5, (2, 100.0): 6.0, (4, 150.0): 0.25}  # 3 ended, 4 was born
    assert cpu_profile.tree_delta(before, now) == 1.75
    # A pid reused by a process started later is another process: counted from its start.
    assert cpu_profile.tree_delta({(5, 100.0): 30.0}, {(5, 200.0): 0.5}) == 0.5
    assert cpu_profile.tree_delta({}, {}) == 0.0


def test_a_tracked_process_that_ended_is_dropped_so_its_pid_cannot_be_charged_again() -> None:
    """The kernel reuses pids: a load generator's old pid, still tracked, once charged a
    Spark driver's whole CPU time (461 s) to the load generator in one sample."""
    short = subprocess.Popen(["sleep", "0.2"])
    sampler = cpu_profile.CpuSampler()
    sampler.track("loadgen", short.pid)
    sampler.sample_once()
    assert sampler.tracked() == {"loadgen": [short.pid]}
    short.wait()
    sampler.sample_once()
    assert sampler.tracked() == {"loadgen": []}
    # A process that ended before it was tracked is not tracked at all.
    sampler.track("loadgen", short.pid)
    assert sampler.tracked() == {"loadgen": []}


def test_a_role_s_cpu_over_an_interval_takes_the_samples_that_ended_in_it() -> None:
    samples = [CpuSample(START + s * 1000, "a", 0.5) for s in range(1, 11)]
    samples += [CpuSample(START + 5000, "b", 2.0)]
    # Samples at 3, 4 and 5 s: each covers the second before it.
    assert cpu_profile.roles_in(samples, START + 2000, START + 5000)["a"] == 1.5
    assert cpu_profile.roles_in(samples, START + 4000, START + 5000) == {"a": 0.5, "b": 2.0}
    assert "c" not in cpu_profile.roles_in(samples, START, START + 10_000)


def test_a_role_is_busy_at_an_instant_when_it_used_cpu_in_the_seconds_before() -> None:
    # Background idle (0.05 per second) but for seconds 20-29 (0.7 per second).
    samples = [CpuSample(START + s * 1000, "bg", 0.7 if 20 <= s < 30 else 0.05) for s in range(60)]
    at = pd.Series([START + 10_000, START + 21_000, START + 29_500, START + 33_500, START + 40_000])
    busy = cpu_profile.busy_at(samples, "bg", at)
    # At 21 s: two busy seconds (1.4 CPU-s); at 33.5 s the window (29.5, 33.5] holds none.
    assert busy.tolist() == [False, True, True, False, False]
    assert not cpu_profile.busy_at(samples, "nobody", at).any()


def test_bronze_s_rows_split_by_the_background_driver_s_cpu_before_their_commit() -> None:
    samples = [CpuSample(START + s * 1000, "bg", 0.8 if 20 <= s < 30 else 0.0) for s in range(60)]
    # A row every 100 ms; rows committed while the background worked took 5 s, the rest 1 s.
    sent = [START + tenth * 100 for tenth in range(500)]
    latency_ms = [5_000 if 20_000 <= s - START + 1_000 < 30_000 else 1_000 for s in sent]
    rows = pd.DataFrame({"sent_ms": sent, "latency_ms": latency_ms})
    split = cpu_profile.split_by_busy(rows, samples, "bg")
    assert split.busy.p50_ms == 5_000
    assert split.idle.p95_ms == 1_000
    assert split.busy_share is not None
    assert 0.15 < split.busy_share < 0.3
    empty = cpu_profile.split_by_busy(rows.iloc[:0], samples, "bg")
    assert empty.busy_share is None


def test_the_sampler_charges_a_process_and_its_children_to_its_role(tmp_path: Path) -> None:
    """A real process tree: a shell whose child spins for 1.5 s, beside an idle one."""
    spin = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"
    busy = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{spin}"; sleep 30'])
    idle = subprocess.Popen(["sleep", "30"])
    sampler = cpu_profile.CpuSampler(interval_s=0.5)
    try:
        sampler.track("busy", busy.pid)
        sampler.track("idle", idle.pid)
        sampler.start()
        time.sleep(3.5)
    finally:
        sampler.stop()
        busy.kill()
        idle.kill()
    samples = sampler.snapshot()
    end = max(s.at_ms for s in samples)
    used = cpu_profile.roles_in(samples, 0, end)
    assert 1.0 < used["busy"] < 2.5, used
    assert used["idle"] < 0.2, used
    # The host was busy at least while the child spun.
    assert used[cpu_profile.HOST_BUSY] >= used["busy"] * 0.8, used
    cpu_profile.write_samples(samples, tmp_path / "cpu.csv")
    assert cpu_profile.read_samples(tmp_path / "cpu.csv") == samples


def test_a_phase_s_cpu_names_its_drivers_the_other_jobs_and_the_rest_of_the_host() -> None:
    from spark_jobs.benchmark import PhaseResult, phase_cpu

    phase = PhaseResult(5000, "two-drivers", 10.0, started_ms=START, ended_ms=START + 10_000)
    samples = []
    for s in range(1, 11):
        at = START + s * 1000
        samples += [
            CpuSample(at, "two-drivers ingest", 1.0),
            CpuSample(at, "two-drivers background", 0.3),
            CpuSample(at, "floor", 0.05),
            CpuSample(at, "loadgen", 0.2),
            CpuSample(at, cpu_profile.HOST_BUSY, 1.9),
            CpuSample(at, cpu_profile.HOST_STEAL, 0.0),
        ]
    samples.append(CpuSample(START + 11_000, "two-drivers ingest", 9.0))  # after the phase
    used = phase_cpu(samples, phase, ["floor", "two-drivers"])
    assert used == {
        "two-drivers ingest": 10.0,
        "two-drivers background": 3.0,
        "other jobs": 0.5,
        "loadgen": 2.0,
        "rest of host": 3.5,
        "host busy": 19.0,
        "host steal": 0.0,
    }


def test_driver_roles_follow_each_layout_s_drivers() -> None:
    from spark_jobs.benchmark import background_role, job_roles

    assert job_roles("floor") == ["floor"]
    assert job_roles("two-drivers") == ["two-drivers ingest", "two-drivers background"]
    assert job_roles("one-driver") == ["one-driver driver"]
    assert background_role("two-drivers-nice") == "two-drivers-nice background"
    assert background_role("one-driver") is None
    assert background_role("floor") is None
