"""Local processes of the embedded runtime: start detached, find by pid, stop.

Each service owns ``<state_dir>/<service>/`` with ``service.log``,
``service.pid`` and a ``data/`` folder. The pid file also records the
process start time read from ``/proc``, so a pid reused by an unrelated
process after a reboot is never mistaken for the service (and never killed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServicePaths:
    """Where one service keeps its files."""

    root: Path

    @property
    def log(self) -> Path:
        return self.root / "service.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "service.pid"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def ensure(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)


def _running_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, pgrp, ...),
    or None when the process does not exist or is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields


def _proc_start_ticks(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot, or None if it is not running."""
    fields = _running_stat(pid)
    return None if fields is None else fields[19]


def read_pid(paths: ServicePaths) -> int | None:
    """The pid of the running service, or None when it is not running."""
    try:
        pid_text, ticks = paths.pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if _proc_start_ticks(pid) != ticks:
        return None
    return pid


def spawn(
    paths: ServicePaths,
    command: list[str],
    env: dict[str, str],
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start ``command`` detached in its own session, output appended to the service log.

    ``user``: run it as that account (its primary group, no supplementary
    groups), for a server that refuses to run as root.
    """
    paths.ensure()
    with paths.log.open("ab") as log:
        log.write(f"\n=== start {time.strftime('%Y-%m-%dT%H:%M:%S')}: {command}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd or paths.root,
            start_new_session=True,
            user=user,
            group=_primary_group(user),
            extra_groups=[] if user else None,
        )
    ticks = _proc_start_ticks(proc.pid) or "0"
    paths.pid_file.write_text(f"{proc.pid} {ticks}\n")
    return proc.pid


def _primary_group(user: str | None) -> int | None:
    if user is None:
        return None
    import pwd

    return pwd.getpwnam(user).pw_gid


def stop(
    paths: ServicePaths, timeout_s: float, stop_signal: signal.Signals = signal.SIGTERM
) -> bool:
    """Stop the service by its recorded pid: ``stop_signal`` to it, SIGKILL to its group
    after ``timeout_s``.

    Only the service's own process gets the signal, so it shuts down in order
    (the streaming job stops its queries before its Spark JVM goes; PostgreSQL's
    postmaster stops its own children); whatever of its process group is left
    once it has exited is then signalled too, and so is every process that
    descended from it before the stop but left the group (Airflow's task
    supervisors start sessions of their own and outlive the scheduler).
    Returns False when nothing was running.
    """
    pid = read_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    # Noted with their start times: a pid reused meanwhile is never signalled.
    descendants = [(child, _proc_start_ticks(child)) for child in _descendants(pid)]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, stop_signal)
    if not _wait_gone(paths, pid, timeout_s):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _wait_gone(paths, pid, None)
    _end_group(pid)
    _end_strays([(child, ticks) for child, ticks in descendants if ticks is not None])
    paths.pid_file.unlink(missing_ok=True)
    return True


def _wait_gone(paths: ServicePaths, pid: int, timeout_s: float | None) -> bool:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while read_pid(paths) is not None:
        if deadline is not None and time.monotonic() > deadline:
            return False
        _reap(pid)
        time.sleep(0.1)
    return True


def live_group_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that are still running (zombies left out)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _running_stat(entry.name)
            if fields is not None and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _end_group(pgid: int, grace_s: float = 10.0) -> None:
    """Signal what is left of a process group (children of an exited leader).

    Done once no member is running. An exited leader that is our own child
    stays in the group as a zombie until it is reaped, so it is reaped here and
    zombies do not count: waiting on ``killpg(pgid, 0)`` alone sat out the
    whole grace for every service a test session had started.
    """
    _reap(pgid)
    if not live_group_members(pgid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            _reap(pgid)
            if not live_group_members(pgid):
                return
            time.sleep(0.1)
        os.killpg(pgid, signal.SIGKILL)


def _end_strays(processes: list[tuple[int, str]], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``, to those of ``processes`` still alive."""

    def alive() -> list[int]:
        return [pid for pid, ticks in processes if _proc_start_ticks(pid) == ticks]

    for pid in alive():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect the exit status when the service is our own child (else it stays a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    for child in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    try:
        direct = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return children
    for child in map(int, direct):
        children.append(child)
        children.extend(_descendants(child))
    return children


def lower_cpu_priority(nice: int) -> None:
    """Give this process, and the children it starts, at most the CPU others leave idle.

    Both the process's own niceness and, where Linux groups processes by
    session (``sched_autogroup_enabled``, the default), its session's: every
    service runs in a session of its own, and between sessions only the
    group's niceness counts.
    """
    if nice <= 0:
        return
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    autogroup = Path("/proc/self/autogroup")
    if autogroup.exists():
        with contextlib.suppress(OSError):
            autogroup.write_text(str(nice))
