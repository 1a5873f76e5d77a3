"""``streamhouse loadgen`` and ``streamhouse bench loadgen``: synthetic load straight to Kafka.

Settings come from ``settings.loadgen`` (``STREAMHOUSE_LOADGEN__*``); the
options override them for one run.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import UserFacingError
from core.settings import PROJECT_ROOT, Settings
from streamhouse import rendering
from streamhouse.cli_common import console, guarded, load_settings, out

if TYPE_CHECKING:
    from spark_jobs.benchmark import StreamingBenchReport

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
bench_app = typer.Typer(help="Benchmarks (not tests): print and save measured figures.")
app.add_typer(bench_app, name="bench")


DEFAULT_BENCH_OUTPUT = PROJECT_ROOT / "benchmarks" / "results" / "loadgen.json"


def _kafka_reachable(settings: Settings) -> None:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(settings.kafka.client_config()).list_topics(timeout=10)
    except Exception:
        raise UserFacingError(
            f"Kafka is not reachable at {settings.kafka.bootstrap_servers}: start it with "
            "`streamhouse stack up kafka registry` or set STREAMHOUSE_KAFKA__BOOTSTRAP_SERVERS."
        ) from None


def _prepare(settings: Settings, topic: str) -> tuple[str, int]:
    from producers.loadgen.runner import ensure_topic, register_schema

    _kafka_reachable(settings)
    if ensure_topic(settings.kafka, topic):
        console.print(f"[cyan]•[/] created topic {topic}")
    try:
        return register_schema(settings.registry, topic)
    except Exception as error:
        raise UserFacingError(
            f"cannot register quake_change.avsc under {topic}-value with the schema registry at "
            f"{settings.registry.url} ({error}): start it with `streamhouse stack up registry` "
            "or set STREAMHOUSE_REGISTRY__URL."
        ) from None


def _plan(settings: Settings, **overrides: Any) -> Any:
    """A LoadPlan from settings.loadgen with ``overrides`` (None = keep the setting)."""
    from producers.loadgen.generator import LoadProfile
    from producers.loadgen.runner import LoadPlan, new_run_id, producer_config

    load = settings.loadgen.model_copy(
        update={
            k: v
            for k, v in overrides.items()
            if v is not None and k in type(settings.loadgen).model_fields
        }
    )
    topic = load.topic or settings.kafka.changes_topic
    try:
        profile = LoadProfile(
            entities=load.entities,
            duplicates=load.duplicates,
            out_of_order=load.out_of_order,
            late=load.late,
            late_by_ms=int(load.late_by_s * 1000),
            stable_event_time=overrides.get("history_ms") is not None,
        )
    except ValueError as error:
        raise UserFacingError(f"{error}: change the shares or the entity count.") from None
    schema_str, schema_id = _prepare(settings, topic)
    return LoadPlan(
        topic=topic,
        schema_str=schema_str,
        schema_id=schema_id,
        producer_config=producer_config(
            settings.kafka, load, client_id=f"streamhouse-loadgen-{socket.gethostname()}"
        ),
        profile=profile,
        processes=load.processes,
        rate_per_s=None if overrides.get("max_speed") else load.rate_per_s,
        events=overrides.get("events"),
        duration_s=overrides.get("duration_s"),
        seed=load.seed,
        source_name=load.source_name,
        run_id=new_run_id(),
        flush_timeout_s=load.flush_timeout_s,
        history_ms=overrides.get("history_ms"),
    )


def history_span_ms(days: float, end: str | None, now_ms: int) -> tuple[int, int]:
    """(start, end) epoch ms of a history of ``days`` days ending at ``end`` (ISO, UTC; now)."""
    from datetime import UTC, datetime

    if end is None:
        end_ms = now_ms
    else:
        try:
            moment = datetime.fromisoformat(end)
        except ValueError:
            raise UserFacingError(
                f"--history-end {end!r} is not a date or time: write it like 2026-11-26."
            ) from None
        end_ms = int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp() * 1000)
    if end_ms > now_ms:
        raise UserFacingError(
            f"--history-end {end} is in the future: the stream would quarantine those events; "
            "give a time before now."
        )
    return end_ms - int(days * 86_400_000), end_ms


def _summary_table(totals: Any, plan: Any) -> Table:
    from producers.loadgen.generator import EventKind

    table = rendering.table("", "value", title=f"loadgen {plan.run_id} -> {plan.topic}")
    rows = [
        ("processes", str(plan.processes)),
        ("sent", f"{totals.sent:,}"),
        ("acknowledged", f"{totals.acked:,}"),
        ("failed", f"{totals.failed:,}"),
        ("elapsed", f"{totals.elapsed_s:.2f} s"),
        ("achieved rate (acked)", f"{totals.acked_per_s:,.0f} events/s"),
        ("target rate", "max" if plan.rate_per_s is None else f"{plan.rate_per_s:,.0f} events/s"),
    ]
    for kind in EventKind:
        rows.append((f"  {kind.name.lower()}", f"{totals.by_kind[kind]:,}"))
    for quantile in (0.5, 0.95, 0.99):
        bound = totals.latency_quantile_s(quantile)
        text = "-" if bound is None else f"<= {bound * 1000:g} ms"
        rows.append((f"produce latency p{int(quantile * 100)}", text))
    for row in rows:
        table.add_row(*row)
    return table


def _run(settings: Settings, plan: Any, *, serve_metrics: bool, show: bool) -> Any:
    """Run ``plan`` with a progress line and (optionally) /metrics; the totals."""
    import multiprocessing as mp
    import time

    from prometheus_client import CollectorRegistry, start_http_server

    from producers.loadgen.runner import run_load
    from producers.loadgen.stats import LoadGenCollector

    stop = mp.get_context("spawn").Event()
    servers: list[Any] = []

    def serve(shared: Any) -> None:
        port = settings.loadgen.metrics_port
        if not serve_metrics or port == 0:
            return
        registry = CollectorRegistry()
        registry.register(LoadGenCollector(shared, plan.processes, plan.topic, time.monotonic_ns))
        try:
            servers.append(start_http_server(port, addr=settings.runtime.host, registry=registry))
        except OSError as error:
            raise UserFacingError(
                f"cannot serve metrics on {settings.runtime.host}:{port} ({error}): set "
                "STREAMHOUSE_LOADGEN__METRICS_PORT to a free port, or 0 for none."
            ) from None
        console.print(f"[cyan]•[/] metrics on http://{settings.runtime.host}:{port}/metrics")

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    goal = f"{plan.events:,} events" if plan.events is not None else f"{plan.duration_s:g} s"
    progress = Progress(
        TextColumn("[bold]loadgen[/] {task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
    )
    total = float(plan.events if plan.events is not None else plan.duration_s)
    try:
        with progress:
            task = progress.add_task(f"starting {plan.processes} process(es), {goal}", total=total)

            def on_progress(snapshot: Any) -> None:
                done = snapshot.acked if plan.events is not None else snapshot.elapsed_s
                progress.update(
                    task,
                    completed=min(done, total),
                    description=(
                        f"sent {snapshot.sent:,} acked {snapshot.acked:,} failed "
                        f"{snapshot.failed:,} | {snapshot.acked_per_s:,.0f} events/s"
                    ),
                )

            return run_load(plan, on_progress=on_progress, stop=stop, on_shared=serve)
    except RuntimeError as error:
        raise UserFacingError(f"{error}: see the log lines above.") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for server, _thread in servers:
            server.shutdown()


def _check_goal(events: int | None, duration_s: float | None) -> None:
    if (events is None) == (duration_s is None):
        raise UserFacingError("give exactly one of --events N and --duration S.")


@app.command("loadgen")
def loadgen(  # noqa: PLR0917 - typer maps each parameter to an option
    rate: Annotated[
        float | None, typer.Option("--rate", min=1, help="Target events/s over all processes.")
    ] = None,
    max_speed: Annotated[bool, typer.Option("--max", help="As fast as possible.")] = False,
    events: Annotated[int | None, typer.Option("--events", min=1, help="Events to send.")] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", min=0.1, help="Seconds to send for.")
    ] = None,
    processes: Annotated[int | None, typer.Option("--processes", min=1, max=64)] = None,
    duplicates: Annotated[float | None, typer.Option(min=0, max=0.99)] = None,
    out_of_order: Annotated[float | None, typer.Option("--out-of-order", min=0, max=0.49)] = None,
    late: Annotated[float | None, typer.Option(min=0, max=0.99)] = None,
    entities: Annotated[int | None, typer.Option(min=1, help="Distinct entity ids.")] = None,
    topic: Annotated[str | None, typer.Option(help="Default: kafka.changes_topic.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the generated stream.")] = None,
    history_days: Annotated[
        float | None,
        typer.Option(
            "--history-days",
            min=0.001,
            help="Spread event times and Kafka timestamps evenly over this many past days "
            "(needs --events); revisions keep their quake's event time.",
        ),
    ] = None,
    history_end: Annotated[
        str | None,
        typer.Option("--history-end", help="End of the history (ISO date or time, UTC; now)."),
    ] = None,
) -> None:
    """Send synthetic change events (quake_change.avsc) straight to Kafka, then print a summary."""
    import time

    def action() -> None:
        if rate is not None and max_speed:
            raise UserFacingError("give either --rate N or --max, not both.")
        _check_goal(events, duration)
        if history_days is None and history_end is not None:
            raise UserFacingError("--history-end needs --history-days.")
        if history_days is not None and events is None:
            raise UserFacingError("--history-days needs --events N (not --duration).")
        history = (
            history_span_ms(history_days, history_end, time.time_ns() // 1_000_000)
            if history_days is not None
            else None
        )
        settings = load_settings()
        plan = _plan(
            settings,
            rate_per_s=rate,
            max_speed=max_speed,
            events=events,
            duration_s=duration,
            processes=processes,
            duplicates=duplicates,
            out_of_order=out_of_order,
            late=late,
            entities=entities,
            topic=topic,
            seed=seed,
            history_ms=history,
        )
        totals = _run(settings, plan, serve_metrics=True, show=True)
        out.print(_summary_table(totals, plan))
        if totals.failed:
            raise UserFacingError(
                f"{totals.failed:,} events were not acknowledged: see the delivery errors above."
            )

    guarded(action)


@bench_app.command("loadgen")
def bench_loadgen(
    runs: Annotated[int, typer.Option(min=1, help="Runs per process count.")] = 5,
    duration: Annotated[float, typer.Option(min=1, help="Seconds per run.")] = 10.0,
    processes: Annotated[
        list[int] | None, typer.Option("--processes", help="Process counts (repeat).")
    ] = None,
    output: Annotated[Path, typer.Option(help="JSON file of the results.")] = DEFAULT_BENCH_OUTPUT,
) -> None:
    """Acknowledged events/s of the load generator at full speed (acks=all), 1 vs 2 processes."""
    import uuid

    from producers.loadgen import bench
    from producers.loadgen.runner import delete_topic

    counts = processes or [1, 2]

    def action() -> None:
        settings = load_settings()
        topics: list[str] = []

        def run_once(process_count: int, index: int) -> Any:
            topic = f"loadgen-bench-{uuid.uuid4().hex[:8]}"
            topics.append(topic)
            plan = _plan(
                settings, max_speed=True, duration_s=duration, processes=process_count, topic=topic
            )
            try:
                return _run(settings, plan, serve_metrics=False, show=False)
            finally:
                delete_topic(settings.kafka, topic)

        def on_result(result: bench.RunResult) -> None:
            console.print(
                f"[cyan]•[/] {result.processes} process(es): {result.acked_per_s:,.0f} acked "
                f"events/s ({result.acked:,} in {result.elapsed_s:.1f} s, failed {result.failed})"
            )

        with console.status(f"benchmark: {runs} runs x {counts} processes x {duration:g} s"):
            results = bench.run_series(counts, runs, run_once, on_result)
        summaries = bench.summarise(results)
        table = rendering.table(
            "processes", "runs", "median acked events/s", "min", "max", "failed"
        )
        for s in summaries:
            table.add_row(
                str(s.processes),
                str(s.runs),
                f"{s.median_acked_per_s:,.0f}",
                f"{s.min_acked_per_s:,.0f}",
                f"{s.max_acked_per_s:,.0f}",
                str(s.failed),
            )
        out.print(table)
        load = settings.loadgen
        report = bench.BenchReport(
            command=(
                f"streamhouse bench loadgen --runs {runs} --duration {duration:g} "
                + " ".join(f"--processes {c}" for c in counts)
            ),
            settings={
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": load.linger_ms,
                "batch.size": load.batch_size_bytes,
                "batch.num.messages": load.batch_num_messages,
                "compression.type": load.compression,
                "topic_partitions": settings.kafka.topic_partitions,
                "entities": load.entities,
                "duration_s": duration,
            },
            summaries=summaries,
            runs=results,
            machine=bench.machine_info(),
            finished_at=bench.timestamp(),
        )
        report.write(output)
        console.print(f"[green]saved[/] {output}")

    guarded(action)


@bench_app.command("streaming")
def bench_streaming(  # noqa: PLR0917 - typer maps each parameter to an option
    rates: Annotated[
        list[int] | None, typer.Option("--rate", help="Events/s of a phase (repeat the option).")
    ] = None,
    duration: Annotated[float, typer.Option(help="Seconds of each phase.", min=10)] = 120.0,
    processes: Annotated[int, typer.Option(help="Load generator processes.", min=1)] = 1,
    layouts: Annotated[
        list[str] | None,
        typer.Option(
            "--layout",
            help="Pipeline layout to run (repeat the option): two-drivers (as the stack runs "
            "it), one-driver, two-drivers-nice (the background driver at nice 10), "
            "two-drivers-txn (a Delta transaction id on every ingest append). Default: "
            "two-drivers and one-driver.",
        ),
    ] = None,
    warmup: Annotated[
        float,
        typer.Option(help="Seconds of load at the first rate after each job's start.", min=30),
    ] = 90.0,
    output: Annotated[Path, typer.Option(help="Where to save the JSON (and PNG) report.")] = (
        PROJECT_ROOT / "benchmarks" / "results" / "streaming.json"
    ),
) -> None:
    """Latency P50/P95/P99 of the pipeline next to the bare Kafka -> Delta floor, cold start,
    sustained rate, replay speed (cold and warm)."""
    from spark_jobs import benchmark

    def action() -> None:
        chosen_layouts = list(dict.fromkeys(layouts or benchmark.DEFAULT_LAYOUTS))
        unknown = [name for name in chosen_layouts if name not in benchmark.LAYOUTS]
        if unknown:
            raise UserFacingError(
                f"Unknown layout {', '.join(unknown)}: choose from {', '.join(benchmark.LAYOUTS)}."
            )
        settings = load_settings()
        _kafka_reachable(settings)
        chosen = rates or [1000, 5000, 20000]
        command = (
            "streamhouse bench streaming "
            + " ".join(f"--rate {r}" for r in chosen)
            + f" --duration {duration:g} --warmup {warmup:g} --processes {processes} "
            + " ".join(f"--layout {name}" for name in chosen_layouts)
        )
        result = benchmark.run_benchmark(
            settings,
            rates=chosen,
            duration_s=duration,
            processes=processes,
            output=output,
            report=console.print,
            command=command,
            layouts=chosen_layouts,
            warmup_s=warmup,
        )
        table = rendering.table(
            "layout", "events/s", "floor P50/P95/P99 s", "bronze P50/P95/P99 s",
            "bronze/floor P95, P99", "windows P50/P95/P99 s", "windows - floor P95",
            "silver P50/P95/P99 s", "sustained",
            title="steady state, pipeline next to the floor (same run)",
        )  # fmt: skip
        for c in result.comparisons:
            table.add_row(
                c.layout,
                str(c.rate_per_s),
                _triple(c.floor.p50_ms, c.floor.p95_ms, c.floor.p99_ms),
                _triple(c.bronze.p50_ms, c.bronze.p95_ms, c.bronze.p99_ms),
                f"{_x(c.bronze_p95_ratio)}, {_x(c.bronze_p99_ratio)}",
                _triple(c.windows.p50_ms, c.windows.p95_ms, c.windows.p99_ms),
                "-"
                if c.windows_p95_over_floor_s is None
                else f"+{c.windows_p95_over_floor_s:.2f} s",
                "-"
                if c.silver is None
                else _triple(c.silver.p50_ms, c.silver.p95_ms, c.silver.p99_ms),
                "yes" if c.sustained else "no",
            )
        out.print(table)
        cold = "; ".join(
            f"{job} {series} {'never settled' if s is None else f'{s:.0f} s'}"
            for job, by_series in result.cold_start_s.items()
            for series, s in by_series.items()
        )
        out.print(f"cold start until latency settles (warm-up): {cold}")
        _print_cpu(result)
        for r in result.replays:
            out.print(
                f"replay from {r.source}: {r.records:,} records, cold {r.cold_seconds:.1f} s "
                f"({r.cold_rate_per_s:,.0f}/s), warm {r.warm_seconds:.1f} s "
                f"({r.warm_rate_per_s:,.0f}/s)"
            )
        for layout, goals in result.targets.items():
            highest = result.highest_sustained_rate[layout]
            out.print(f"{layout}: highest sustained rate {highest} events/s")
            for target, met in goals.items():
                mark = "[green]met[/]" if met else "[red]not met[/]" if met is False else "-"
                out.print(f"  {mark}  {target}")
        out.print(
            f"report {output}, plot {output.with_suffix('.png')}, per-row latencies "
            f"{result.latencies_dir}, CPU samples {result.cpu_samples_path}"
        )

    guarded(action)


def _print_cpu(result: StreamingBenchReport) -> None:
    """Each phase's CPU by process (cores: CPU-seconds per second of the phase), and bronze's
    latency by whether the background driver was busy before each row's commit."""
    from spark_jobs import benchmark, cpu_profile

    table = rendering.table(
        "phase", "events/s", "this job's drivers", "other jobs", "loadgen", "rest of host",
        "host busy", "steal", title="CPU by process while each phase ran (cores)",
    )  # fmt: skip
    for phase in result.phases:
        seconds = max(1.0, (phase.ended_ms - phase.started_ms) / 1000)

        def cores(seconds_used: float, per: float = seconds) -> str:
            return f"{seconds_used / per:.2f}"

        mine = ", ".join(
            f"{role.removeprefix(phase.job).strip() or role} {cores(phase.cpu_s.get(role, 0.0))}"
            for role in benchmark.job_roles(phase.job)
        )
        table.add_row(
            f"{phase.job}{' warm-up' if phase.warmup else ''}",
            str(phase.rate_per_s),
            mine,
            *(
                cores(phase.cpu_s.get(role, 0.0))
                for role in (
                    benchmark.OTHER_JOBS,
                    benchmark.LOADGEN_ROLE,
                    benchmark.REST_OF_HOST,
                    cpu_profile.HOST_BUSY,
                    cpu_profile.HOST_STEAL,
                )
            ),
        )
    out.print(table)
    split = rendering.table(
        "layout", "events/s", "rows committed while busy", "bronze P50/P95/P99 s, idle",
        "bronze P50/P95/P99 s, busy",
        title=(
            f"bronze by its background driver's CPU (busy: more than {cpu_profile.BUSY_CPU_S} "
            f"CPU-s in the {cpu_profile.BUSY_WINDOW_MS // 1000} s before the commit)"
        ),
    )  # fmt: skip
    for c in result.comparisons:
        by = c.bronze_by_background
        if by is None:
            continue
        share = by.busy_share
        split.add_row(
            c.layout,
            str(c.rate_per_s),
            "-" if share is None else f"{share:.0%}",
            _triple(by.idle.p50_ms, by.idle.p95_ms, by.idle.p99_ms),
            _triple(by.busy.p50_ms, by.busy.p95_ms, by.busy.p99_ms),
        )
    if split.rows:
        out.print(split)


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _triple(p50: float | None, p95: float | None, p99: float | None) -> str:
    if p50 is None or p95 is None or p99 is None:
        return "-"
    return f"{p50 / 1000:.2f} / {p95 / 1000:.2f} / {p99 / 1000:.2f}"
