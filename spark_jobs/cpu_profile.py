"""Who used the cores while a benchmark ran: CPU by process, once a second.

The streaming benchmark's latencies say *that* bronze was slow at some moment;
this says what else was running then. ``CpuSampler`` is a thread that, once a
second, reads the CPU time (user + system) of each tracked role (a process and
all its descendants: ``stream run`` is a Python process whose JVM is its
child) and of the whole host, and keeps the differences as samples
``(at_ms, role, cpu_s)``: the CPU-seconds a role used in the second before
``at_ms``. A role's CPU share over an interval is the sum of its samples
there, divided by the interval's seconds.

A process that appears between two samples is counted from its start (its
whole CPU time falls in that interval); one that ends between two samples
loses only its last fraction of a second. Processes are known by pid *and*
start time, and a tracked process that ended is dropped: the kernel reuses
pids (for threads too), and a reused pid once charged a Spark driver's whole
CPU time, 461 s, to the load generator in one sample. The host's figures come from
``/proc/stat`` (busy = every state but idle and iowait; steal apart), so
whatever no role owns (Kafka, the registry, PostgreSQL) is the host's busy
time minus the roles'.

``split_by_busy`` is the attribution: each bronze row by whether a role
(the background driver) was busy in the seconds before the row's commit.
"""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spark_jobs import latency

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    import psutil

#: A process as the sampler knows it: its pid and its start time (pids are reused).
ProcessKey = tuple[int, float]

#: The host's own roles: its busy CPU time (every process) and the time its hypervisor stole.
HOST_BUSY = "host busy"
HOST_STEAL = "host steal"
#: A role is busy at a commit when it used more than this many CPU-seconds in the window before.
BUSY_WINDOW_MS = 4_000
BUSY_CPU_S = 0.6


@dataclass(frozen=True)
class CpuSample:
    """CPU-seconds ``role`` used in the interval that ended at ``at_ms``."""

    at_ms: int
    role: str
    cpu_s: float


def tree_delta(before: dict[ProcessKey, float], now: dict[ProcessKey, float]) -> float:
    """CPU-seconds a process tree used between two readings of its processes' times (pure).

    ``before`` and ``now`` map (pid, start time) -> CPU-seconds since the
    process started. A process only in ``now`` was born in between: its whole
    time counts. One only in ``before`` ended in between and adds nothing. A
    time that went down counts from zero.
    """
    used = 0.0
    for pid, seconds in now.items():
        previous = before.get(pid, 0.0)
        used += seconds - previous if seconds >= previous else seconds
    return used


def roles_in(samples: list[CpuSample], start_ms: int, end_ms: int) -> dict[str, float]:
    """Every role's CPU-seconds between ``start_ms`` and ``end_ms`` (pure; the samples that
    ended in it, each covering the second before it)."""
    used: dict[str, float] = {}
    for sample in samples:
        if start_ms < sample.at_ms <= end_ms:
            used[sample.role] = used.get(sample.role, 0.0) + sample.cpu_s
    return used


def busy_at(
    samples: list[CpuSample],
    role: str,
    at_ms: pd.Series,
    window_ms: int = BUSY_WINDOW_MS,
    threshold_cpu_s: float = BUSY_CPU_S,
) -> pd.Series:
    """For each instant of ``at_ms``: did ``role`` use more than ``threshold_cpu_s`` of CPU in
    the ``window_ms`` before it (pure)."""
    import numpy as np
    import pandas as pd

    mine = sorted((s.at_ms, s.cpu_s) for s in samples if s.role == role)
    if not mine:
        return pd.Series(False, index=at_ms.index)
    times = np.array([t for t, _ in mine], dtype="int64")
    cumulative = np.concatenate([[0.0], np.cumsum([c for _, c in mine])])
    instants = at_ms.to_numpy(dtype="int64")
    # Samples with at in (instant - window, instant]: the CPU of the seconds just before it.
    upper = np.searchsorted(times, instants, side="right")
    lower = np.searchsorted(times, instants - window_ms, side="right")
    return pd.Series(cumulative[upper] - cumulative[lower] > threshold_cpu_s, index=at_ms.index)


@dataclass(frozen=True)
class BusySplit:
    """A series' latencies by whether a role was busy when each row was committed."""

    role: str
    idle: latency.Percentiles
    busy: latency.Percentiles

    @property
    def busy_share(self) -> float | None:
        """The share of rows committed while the role was busy."""
        total = self.idle.rows + self.busy.rows
        return self.busy.rows / total if total else None


def split_by_busy(rows: pd.DataFrame, samples: list[CpuSample], role: str) -> BusySplit:
    """``rows`` (``sent_ms``, ``latency_ms``) split by ``role``'s CPU before each commit."""
    busy = busy_at(samples, role, rows["sent_ms"] + rows["latency_ms"])
    return BusySplit(
        role,
        latency.Percentiles.of(rows.loc[~busy, "latency_ms"]),
        latency.Percentiles.of(rows.loc[busy, "latency_ms"]),
    )


def _host_times() -> tuple[float, float]:
    """The host's busy and stolen CPU-seconds since boot."""
    import psutil

    times = psutil.cpu_times()
    busy = sum(times) - times.idle - getattr(times, "iowait", 0.0) - getattr(times, "steal", 0.0)
    # Guest time is already in user time on Linux.
    busy -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    return busy, getattr(times, "steal", 0.0)


def _tree_times(root: psutil.Process) -> dict[ProcessKey, float] | None:
    """(pid, start time) -> CPU-seconds of a process and each of its living descendants;
    None once the process ended (its pid may already belong to another)."""
    import psutil

    try:
        if not root.is_running():  # compares the start time: a reused pid is not running
            return None
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    times: dict[ProcessKey, float] = {}
    for process in tree:
        try:
            cpu = process.cpu_times()
            times[process.pid, process.create_time()] = cpu.user + cpu.system
        except psutil.Error:
            continue
    return times


class CpuSampler:
    """A thread sampling the CPU of tracked process trees and of the host, every second."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.samples: list[CpuSample] = []
        self._roots: dict[str, list[psutil.Process]] = {}
        self._before: dict[str, dict[ProcessKey, float]] = {}
        self._host_before = _host_times()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def track(self, role: str, pid: int) -> None:
        """Count ``pid`` (a process just started: its whole CPU time) and its descendants
        under ``role``. A process that already ended is ignored."""
        import psutil

        try:
            process = psutil.Process(pid)
        except psutil.Error:
            return
        with self._lock:
            self._roots.setdefault(role, []).append(process)

    def tracked(self) -> dict[str, list[int]]:
        """The pids of the tracked processes still running, by role (ended ones are dropped at
        the next sample)."""
        with self._lock:
            return {role: [p.pid for p in roots] for role, roots in self._roots.items()}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample_once()

    def sample_once(self) -> None:
        """Read every tracked tree and the host; keep the differences as samples."""
        at_ms = int(time.time() * 1000)
        with self._lock:
            roots = {role: list(processes) for role, processes in self._roots.items()}
        taken = []
        ended = []
        for role, processes in roots.items():
            now: dict[ProcessKey, float] = {}
            for process in processes:
                times = _tree_times(process)
                if times is None:
                    ended.append((role, process))
                else:
                    now.update(times)
            used = tree_delta(self._before.get(role, {}), now)
            self._before[role] = now
            taken.append(CpuSample(at_ms, role, round(used, 3)))
        host = _host_times()
        taken.append(CpuSample(at_ms, HOST_BUSY, round(host[0] - self._host_before[0], 3)))
        taken.append(CpuSample(at_ms, HOST_STEAL, round(host[1] - self._host_before[1], 3)))
        self._host_before = host
        with self._lock:
            self.samples.extend(taken)
            for role, process in ended:
                self._roots[role].remove(process)

    def snapshot(self) -> list[CpuSample]:
        with self._lock:
            return list(self.samples)


def write_samples(samples: list[CpuSample], path: Path) -> None:
    """The raw samples as CSV (``at_ms,role,cpu_s``), beside the run's latencies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["at_ms", "role", "cpu_s"])
        writer.writerows((s.at_ms, s.role, s.cpu_s) for s in samples)


def read_samples(path: Path) -> list[CpuSample]:
    """The samples ``write_samples`` wrote."""
    with path.open(newline="") as handle:
        return [
            CpuSample(int(row["at_ms"]), row["role"], float(row["cpu_s"]))
            for row in csv.DictReader(handle)
        ]
