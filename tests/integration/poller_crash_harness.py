"""The poller with a crash between produce and commit: ``python poller_crash_harness.py MARKER N``.

Runs ``producers.poller.run`` from the settings in the environment and kills
itself with SIGKILL inside the N-th poll transaction, after everything of it
was produced (and sent) and before the commit, having first written MARKER (JSON: the
poll id and how many versions the open transaction carries), so the test can
prove the fault landed where it had to.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from core.settings import Settings
from producers import poller


def main() -> None:
    marker, crash_at = Path(sys.argv[1]), int(sys.argv[2])
    transactions = 0

    def crash_before_commit(poll_id: str, versions: int) -> None:
        nonlocal transactions
        transactions += 1
        if transactions == crash_at:
            marker.write_text(json.dumps({"poll_id": poll_id, "versions": versions}))
            # librdkafka sends in the background: give it time to put the open
            # transaction's records into the log, so the crash leaves them there.
            time.sleep(2.0)
            os.kill(os.getpid(), signal.SIGKILL)

    poller.run(Settings(), 0.2, threading.Event(), before_commit=crash_before_commit)


if __name__ == "__main__":
    main()
