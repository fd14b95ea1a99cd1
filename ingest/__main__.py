"""`python -m ingest --index N`: one MQTT ingest worker (N = 1, 2, ... share the broker's load).

Each worker has a stable MQTT client id (`ingest-N`), so its persistent session, and whatever the
broker queued for it while it was down, survives a restart. Its /metrics and /healthz are on
127.0.0.1 only; the devices' HTTP side is its own service (`python -m ingest.http`).
"""
from __future__ import annotations

from core.lifecycle import block_stop_signals

# Before any import that may start a thread (numpy's BLAS pool does): threads inherit the blocked
# stop signals, so SIGTERM/SIGINT reach only the sigwait in the main thread (core.lifecycle).
block_stop_signals()

import argparse
import logging
import sys

from config.settings import load_settings
from core.lifecycle import run_until_signalled
from ingest.http.internal import InternalPort
from ingest.service import build_worker

log = logging.getLogger("ingest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    parser.add_argument("--index", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    worker = build_worker(settings, args.index)
    internal = InternalPort(worker, settings.ingest_metrics_port + args.index - 1)
    internal.start()
    log.info("ingest-%d: %d grids, %d terminals, %d sensors; metrics on http://127.0.0.1:%d/metrics",
             args.index, len(worker.registry.city.grids), len(worker.registry.members), len(worker.registry.sensors),
             internal.metrics_port)
    try:
        return run_until_signalled(worker.run, worker.stop_event)
    finally:
        internal.stop()


if __name__ == "__main__":
    sys.exit(main())
