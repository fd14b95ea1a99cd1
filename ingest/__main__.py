"""`python -m ingest --index N`: one ingest worker (N = 1, 2, ... share the broker's load).

Each worker has a stable MQTT client id (`ingest-N`), so its persistent session, and whatever the
broker queued for it while it was down, survives a restart.
"""
from __future__ import annotations

from telemetry.lifecycle import block_stop_signals

# Before any import that may start a thread (numpy's BLAS pool does): threads inherit the blocked
# stop signals, so SIGTERM/SIGINT reach only the sigwait in the main thread (telemetry.lifecycle).
block_stop_signals()

import argparse
import logging
import sys
import time

import psycopg2
import redis

from config.settings import load_settings
from ingest.events import LiveEmitter
from ingest.http import IngestHTTP
from ingest.live import LiveState
from ingest.mqtt_source import MqttSource
from ingest.stages import Registry
from ingest.store import Store
from ingest.worker import Worker, WorkerConfig
from telemetry.citydb import read_city
from telemetry.lifecycle import run_until_signalled

log = logging.getLogger("ingest")


def _load_city(dsn: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = psycopg2.connect(dsn)
            try:
                return read_city(conn)
            finally:
                conn.close()
        except (psycopg2.Error, LookupError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("waiting for the city's reference data: %s", exc)
            time.sleep(2)


def build_worker(settings, index: int, http_port: int | None = None) -> tuple[Worker, IngestHTTP]:
    city = _load_city(settings.pg_dsn)
    source = MqttSource(settings.mqtt_host, settings.mqtt_port, settings.mqtt_username,
                        settings.mqtt_password.get_secret_value(), f"ingest-{index}",
                        receive_maximum=settings.ingest_receive_maximum)
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port,
                         password=settings.redis_password.get_secret_value(), socket_timeout=5)
    worker = Worker(f"ingest-{index}", source, Store(settings.pg_dsn), LiveState(client),
                    LiveEmitter(settings.redis_url), Registry(city),
                    WorkerConfig(batch_size=settings.ingest_batch_size,
                                 flush_interval_s=settings.ingest_flush_interval_s))
    port = http_port if http_port is not None else settings.ingest_http_port + index - 1
    http = IngestHTTP(worker, settings.ingest_http_host, port, settings.mqtt_password_file)
    return worker, http


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    parser.add_argument("--index", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    worker, http = build_worker(settings, args.index)
    http.start()
    log.info("ingest-%d: %d grids, %d terminals, %d sensors; metrics on http://%s:%d/metrics",
             args.index, len(worker.registry.city.grids), len(worker.registry.members),
             len(worker.registry.sensors), settings.ingest_http_host, http.port)
    try:
        return run_until_signalled(worker.run, worker.stop_event)
    finally:
        http.stop()


if __name__ == "__main__":
    sys.exit(main())
