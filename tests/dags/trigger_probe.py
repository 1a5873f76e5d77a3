"""Run the daily sensor's trigger against a Delta table for a while; write what it yielded.

``python trigger_probe.py TABLE TARGET POKE_S WAIT_S OUTPUT`` runs
``BronzeWatermarkTrigger(TABLE, TARGET, POKE_S).run()`` for at most WAIT_S
seconds and writes ``{"event": <payload or null>, "seconds": <elapsed>}`` to
OUTPUT. Run by test_watermark_trigger.py in a fresh interpreter, since Airflow
sets up logging and global state when imported.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def first_event(table: str, target: str, poke_s: float, wait_s: float) -> object:
    from orchestration.sensors import BronzeWatermarkTrigger

    events = BronzeWatermarkTrigger(table, target, poke_s).run()
    try:
        event = await asyncio.wait_for(anext(events), timeout=wait_s)
    except TimeoutError:
        return None
    finally:
        await events.aclose()
    return event.payload


def main(table: str, target: str, poke_s: str, wait_s: str, output: str) -> None:
    began = time.perf_counter()
    payload = asyncio.run(first_event(table, target, float(poke_s), float(wait_s)))
    with open(output, "w", encoding="utf-8") as handle:
        json.dump({"event": payload, "seconds": time.perf_counter() - began}, handle)


if __name__ == "__main__":
    main(*sys.argv[1:6])
