"""Assembling one ingest worker from the settings: broker source, store, live state (and bus),
the city's registry and its HTTP side. (`python -m ingest` runs one; tests build one in-process.)"""
from __future__ import annotations

import logging
import time

import psycopg2

from database.citydb import CityWatch, read_city
from ingest.http.ports import IngestHTTP
from ingest.live import LiveState
from ingest.mqtt_source import MqttSource
from ingest.stages import Registry
from ingest.store import Store
from ingest.worker import Worker, WorkerConfig

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


def build_worker(settings, index: int, http_port: int | None = None,
                 metrics_port: int | None = None) -> tuple[Worker, IngestHTTP]:
    """Worker `index`, logged in to the broker as settings.mqtt_username: each worker has its own
    account, and the broker lets an account connect only with its own client id (its username)."""
    city = _load_city(settings.pg_dsn)
    source = MqttSource(settings.mqtt_host, settings.mqtt_port, settings.mqtt_username,
                        settings.mqtt_password.get_secret_value(), settings.mqtt_username,
                        receive_maximum=settings.ingest_receive_maximum)
    client = settings.redis_client(socket_timeout=5)
    worker = Worker(f"ingest-{index}", source, Store(settings.pg_dsn), LiveState(client), Registry(city),
                    WorkerConfig.from_settings(settings))
    worker.watch = CityWatch(settings.pg_dsn, city, [worker.registry_changed])   # registry changes, at run time
    port = http_port if http_port is not None else settings.ingest_http_port + index - 1
    internal = metrics_port if metrics_port is not None else settings.ingest_metrics_port + index - 1
    http = IngestHTTP(worker, settings.ingest_http_host, port, settings.broker_credentials_file, internal,
                      trusted_proxies=settings.ingest_http_trusted_proxies)
    return worker, http
