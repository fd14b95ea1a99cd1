"""Assembling an ingest chain from the settings: store, live state (and bus), the city's registry
(followed at run time) and a source of deliveries: the broker for an MQTT ingest worker
(`build_worker`, `python -m ingest`; tests build one in-process), or the device-facing HTTP
service's inbox for each of its processes (`build_chain`, `python -m ingest.http`)."""
from __future__ import annotations

import logging
import time

import psycopg2

from database.citydb import CityWatch, read_city
from ingest.live import LiveState
from ingest.mqtt_source import MqttSource
from ingest.stages import Registry
from ingest.store import Store
from ingest.worker import Source, Worker, WorkerConfig

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


def build_chain(settings, source: Source, name: str, city_timeout: float = 120.0) -> Worker:
    """A worker named `name` taking its deliveries from `source`, following the registry."""
    city = _load_city(settings.pg_dsn, city_timeout)
    client = settings.redis_client(socket_timeout=5)
    worker = Worker(name, source, Store(settings.pg_dsn), LiveState(client), Registry(city),
                    WorkerConfig.from_settings(settings))
    worker.watch = CityWatch(settings.pg_dsn, city, [worker.registry_changed])   # registry changes, at run time
    return worker


def build_worker(settings, index: int) -> Worker:
    """MQTT ingest worker `index`, logged in to the broker as settings.mqtt_username (each worker
    has its own account, and the broker lets an account connect only with its own client id). Its
    internal port (/metrics, /healthz) is ingest.http.internal.InternalPort's."""
    source = MqttSource(settings.mqtt_host, settings.mqtt_port, settings.mqtt_username,
                        settings.mqtt_password.get_secret_value(), settings.mqtt_username,
                        receive_maximum=settings.ingest_receive_maximum)
    return build_chain(settings, source, f"ingest-{index}")
