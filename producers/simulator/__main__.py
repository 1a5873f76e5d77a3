"""``python -m producers.simulator [--host H] [--port P] [--fixture F]``: run the simulator.

An entry point, so it reads ``Settings`` (defaults of the options) and stops on
SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from core.settings import Settings
from producers.simulator.dynamics import ChangeMaker, ChangeShares
from producers.simulator.faults import FaultSwitches
from producers.simulator.server import SimulatorConfig, start_simulator, stop_simulator
from producers.simulator.store import EventStore, SimulatedClock, wall_clock_ms


def _arguments(settings: Settings) -> argparse.Namespace:
    source = settings.source
    parser = argparse.ArgumentParser(
        prog="python -m producers.simulator",
        description="Serve the USGS FDSN event query (format=geojson) from real records.",
    )
    parser.add_argument("--host", default=source.simulator_host, help="address to bind")
    parser.add_argument(
        "--port", type=int, default=source.simulator_port, help="port to bind (0: any free port)"
    )
    parser.add_argument(
        "--fixture",
        type=Path,
        default=source.simulator_seed_path,
        help="GeoJSON FeatureCollection to serve (default: the 7-day USGS feed fixture)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG logs every request")
    return parser.parse_args()


def main() -> int:
    """Run the simulator until interrupted; returns the process exit code."""
    settings = Settings()
    args = _arguments(settings)
    dynamics = settings.simulator
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        store = EventStore.from_geojson(args.fixture)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        print(
            f"Cannot load {args.fixture} as a GeoJSON FeatureCollection ({error}); "
            "pass --fixture with a USGS GeoJSON file.",
            file=sys.stderr,
        )
        return 2
    try:
        clock = (
            SimulatedClock(store.seed_time_ms) if store.seed_time_ms is not None else wall_clock_ms
        )
        rng = random.Random(dynamics.seed)
        maker = ChangeMaker(
            store,
            clock,
            rng=rng,
            shares=ChangeShares(
                new_event=dynamics.new_event_share,
                revision=dynamics.revision_share,
                deletion=dynamics.deletion_share,
                drift=dynamics.drift_rate,
            ),
            min_version_age_ms=round(dynamics.min_version_age_s * 1000),
        )
        server, thread = start_simulator(
            args.host,
            args.port,
            store,
            clock=clock,
            config=SimulatorConfig(
                result_cap=dynamics.result_cap,
                cap_counts_before_paging=dynamics.cap_counts_before_paging,
            ),
            faults=FaultSwitches.from_settings(dynamics),
            rng=rng,
            maker=maker,
            changes_per_s=dynamics.changes_per_s,
        )
    except OSError as error:
        print(
            f"Cannot listen on {args.host}:{args.port} ({error}); choose another --port.",
            file=sys.stderr,
        )
        return 2

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    now = datetime.fromtimestamp(server.clock() / 1000, tz=UTC).isoformat(timespec="seconds")
    print(
        f"Serving {len(store)} events at {server.query_url} (simulated now: {now}, "
        f"{dynamics.changes_per_s} changes/s).",
        flush=True,
    )
    while not stop.wait(0.5):  # a bounded wait keeps the main thread responsive to signals
        pass
    stop_simulator(server, thread)
    return 0


if __name__ == "__main__":
    sys.exit(main())
