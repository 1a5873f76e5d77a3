"""Start, stop and inspect the embedded runtime's services.

``up`` is idempotent: a running service is reported, not started twice.
Services start as soon as what they depend on is ready, several at once. Each
start waits for the readiness probe with a timeout and, when the process dies
or never becomes ready, fails naming the service and its log. ``down`` stops
only processes this runtime started (by the pid it recorded), in reverse
order, and keeps their data unless asked to purge.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserFacingError
from core.settings import PROJECT_ROOT, Settings
from streamhouse.runtime import process
from streamhouse.runtime.services import SERVICE_NAMES, ServiceSpec, build_services

Report = Callable[[str], None]


@dataclass(frozen=True)
class ServiceStatus:
    """What ``stack status`` shows of one service."""

    name: str
    pid: int | None
    port: int | None
    healthy: bool
    rss_bytes: int
    log: Path
    #: Beyond readiness: e.g. whether the streaming queries report or are stalled.
    detail: str = ""


def service_paths(settings: Settings, name: str) -> process.ServicePaths:
    """The folder of one service under the state directory."""
    return process.ServicePaths(settings.state_dir / name)


def check_service_names(names: Iterable[str]) -> list[str]:
    """Validate service names given by a user."""
    names = list(names)
    unknown = [n for n in names if n not in SERVICE_NAMES]
    if unknown:
        raise UserFacingError(
            f"Unknown service {', '.join(unknown)}: choose from {', '.join(SERVICE_NAMES)}."
        )
    return names


def with_dependencies(specs: dict[str, ServiceSpec], names: Iterable[str]) -> list[str]:
    """The named services and everything they depend on, in start order."""
    wanted: set[str] = set()

    def visit(name: str) -> None:
        if name in wanted:
            return
        for dep in specs[name].depends_on:
            visit(dep)
        wanted.add(name)

    for name in names:
        visit(name)
    return [name for name in specs if name in wanted]


def startable(waiting: Iterable[str], ready: set[str], specs: dict[str, ServiceSpec]) -> list[str]:
    """The ``waiting`` services whose dependencies are all ``ready``, in start order."""
    return [name for name in waiting if all(dep in ready for dep in specs[name].depends_on)]


def up(settings: Settings, names: Iterable[str] = (), report: Report = print) -> list[str]:
    """Start the named services (default: all) and their dependencies; return those started.

    A service starts as soon as every service it depends on is ready, so
    services that do not depend on each other start at the same time (a JVM's
    start overlaps the Airflow API server's migration, the registry's start
    overlaps PostgreSQL's and Prometheus'). Ports are checked before anything
    starts, and jars are resolved one service at a time: two resolutions at once
    would write the same files of the jar cache.
    """
    specs = build_services(settings)
    order = with_dependencies(specs, check_service_names(names) or list(specs))
    ready: set[str] = set()
    waiting: list[str] = []
    for name in order:
        spec = specs[name]
        pid = process.read_pid(service_paths(settings, name))
        if pid is not None:
            port = f", port {spec.port}" if spec.port is not None else ""
            report(f"{name}: already running (pid {pid}{port})")
            ready.add(name)
            continue
        if spec.port is not None and process.port_in_use(settings.runtime.host, spec.port):
            raise UserFacingError(
                f"Port {spec.port} that {name} needs is in use by another process: stop it, "
                f"or give {name} another port (see `streamhouse settings`)."
            )
        waiting.append(name)
    for name in waiting:
        report(f"{name}: preparing")
        specs[name].resolve()  # jars come from the cache; resolved there once, never at each start
    start_all(settings, specs, waiting, ready, report)
    return waiting


def start_all(
    settings: Settings,
    specs: dict[str, ServiceSpec],
    waiting: list[str],
    ready: set[str],
    report: Report,
    *,
    abandon: threading.Event | None = None,
) -> None:
    """Start ``waiting`` (in dependency order), each once its dependencies are in ``ready``.

    A failed start stops the scheduling: the starts under way finish, nothing
    more begins, and the first failure is raised (it names the service and its
    log). Setting ``abandon`` (an interrupt does) makes the starts under way
    stop waiting for their services.
    """
    waiting = list(waiting)
    failures: list[BaseException] = []
    abandon = abandon or threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, len(waiting))) as pool:
        starting: dict[Future[None], str] = {}
        try:
            while waiting or starting:
                if not failures:
                    for name in startable(waiting, ready, specs):
                        waiting.remove(name)
                        paths = service_paths(settings, name)
                        future = pool.submit(_start, settings, specs[name], paths, report, abandon)
                        starting[future] = name
                if not starting:
                    if not failures:
                        raise RuntimeError(f"no dependency of {waiting} can become ready")
                    break
                done, _ = wait(starting, return_when=FIRST_COMPLETED)
                for future in done:
                    name = starting.pop(future)
                    error = future.exception()
                    if error is None:
                        ready.add(name)
                    else:
                        failures.append(error)
        except BaseException:
            # Ctrl-C: the starts under way stop waiting (their processes keep running, as
            # a sequential start's did), so leaving the pool does not wait out their timeouts.
            abandon.set()
            raise
    if failures:
        raise failures[0]


def _start(
    settings: Settings,
    spec: ServiceSpec,
    paths: process.ServicePaths,
    report: Report,
    abandon: threading.Event,
) -> None:
    paths.ensure()
    command = spec.prepare(paths)
    began = time.monotonic()
    pid = process.spawn(paths, command, spec.env or _default_env(), spec.cwd, spec.user)
    where = f" on port {spec.port}" if spec.port is not None else ""
    report(f"{spec.name}: started pid {pid}, waiting for it to be ready{where}")
    deadline = began + settings.runtime.start_timeout_s
    while not spec.ready():
        if abandon.is_set():
            raise UserFacingError(
                f"{spec.name}: no longer waited for (pid {pid} left running); its log is "
                f"{paths.log}"
            )
        if process.read_pid(paths) is None:
            raise UserFacingError(f"{spec.name} exited while starting; its log is {paths.log}")
        if time.monotonic() > deadline:
            process.stop(paths, settings.runtime.stop_timeout_s)
            raise UserFacingError(
                f"{spec.name} was not ready after {settings.runtime.start_timeout_s:.0f} s "
                f"and was stopped; its log is {paths.log}"
            )
        time.sleep(0.5)
    spec.after_ready()
    report(f"{spec.name}: ready in {time.monotonic() - began:.1f} s")


def _default_env() -> dict[str, str]:
    import os

    return dict(os.environ)


def down(
    settings: Settings, names: Iterable[str] = (), purge: bool = False, report: Report = print
) -> list[str]:
    """Stop the named services (default: all) in reverse start order; return those stopped."""
    chosen = check_service_names(names) or list(SERVICE_NAMES)
    specs = build_services(settings)
    stopped = []
    for name in reversed(SERVICE_NAMES):
        if name not in chosen:
            continue
        paths = service_paths(settings, name)
        spec = specs[name]
        if process.stop(paths, settings.runtime.stop_timeout_s, spec.stop_signal):
            report(f"{name}: stopped")
            stopped.append(name)
        if purge and paths.root.exists():
            shutil.rmtree(paths.root)
            report(f"{name}: data purged")
    if purge and not names:
        _purge_everything(settings, report)
    if not stopped:
        report("nothing was running")
    return stopped


def _purge_everything(settings: Settings, report: Report) -> None:
    """What the stack and its commands wrote: the lake and its checkpoints wherever they
    are on this machine, and all of the state directory (Airflow's home with its
    configuration and password, the docs site, dbt's and Spark's work, the logs), so a
    later ``stack up`` starts as on a fresh machine. A remote lake (s3a://) is not touched."""
    for root in (settings.lake_uri, settings.checkpoint_dir("", "")):
        path = Path(root)
        if path.is_absolute() and path.exists():
            shutil.rmtree(path)
            report(f"purged: {path}")
    state = settings.state_dir.resolve()
    if state in (Path("/"), Path.home().resolve(), PROJECT_ROOT.resolve()):
        report(f"not purging {state}: it is not a directory of the stack's own")
        return
    if state.is_dir():
        for entry in state.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        report(f"purged: everything under {settings.state_dir}")


def status(settings: Settings) -> list[ServiceStatus]:
    """Pid, port, health and memory of every service."""
    specs = build_services(settings)
    rows = []
    for name, spec in specs.items():
        paths = service_paths(settings, name)
        pid = process.read_pid(paths)
        healthy = pid is not None and spec.ready()
        detail = ""
        if healthy and spec.detail is not None:
            detail, bad = spec.detail()
            healthy = not bad
        rows.append(
            ServiceStatus(
                name=name,
                pid=pid,
                port=spec.port,
                healthy=healthy,
                rss_bytes=process.rss_bytes(pid) if pid else 0,
                log=paths.log,
                detail=detail,
            )
        )
    return rows


def log_path(settings: Settings, name: str) -> Path:
    """The log file of a service, checking the name."""
    check_service_names([name])
    return service_paths(settings, name).log
