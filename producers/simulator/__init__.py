"""A simulator of the USGS FDSN event query, served on loopback.

The platform runs offline and tests are deterministic against it: it serves
real USGS records (seeded from a fixture) with the real service's contract
(parameters, paging, errors, response bytes). ``store`` holds the data,
``query`` the contract, ``render`` the exact bodies, ``server`` the HTTP wiring.
"""

from producers.simulator.query import EventQuery, FdsnError
from producers.simulator.server import (
    QUERY_PATH,
    SimulatorConfig,
    SimulatorServer,
    start_simulator,
    stop_simulator,
)
from producers.simulator.store import EventStore, EventVersion, SimulatedClock

__all__ = [
    "QUERY_PATH",
    "EventQuery",
    "EventStore",
    "EventVersion",
    "FdsnError",
    "SimulatedClock",
    "SimulatorConfig",
    "SimulatorServer",
    "start_simulator",
    "stop_simulator",
]
