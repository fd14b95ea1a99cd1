"""Session fixtures: the real servers, started once per test session on free ports in temp dirs."""
from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg2
import pytest
import redis

from database.migrate import migrate
from stack import LocalStack


@pytest.fixture(scope="session")
def stack():
    # tempfile (not pytest's tmp_path) because pytest's temp root is private to root, and the
    # servers run as unprivileged accounts when the tests run as root.
    data_dir = Path(tempfile.mkdtemp(prefix="gridcc-test-"))
    data_dir.chmod(0o711)
    local = LocalStack(data_dir)
    local.start()
    migrate(local.settings().pg_dsn)
    yield local
    local.stop()
    local.remove_data()


@pytest.fixture(scope="session")
def settings(stack):
    return stack.settings()


@pytest.fixture
def db(settings):
    conn = psycopg2.connect(settings.pg_dsn)
    yield conn
    conn.close()


@pytest.fixture
def redis_client(settings):
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port,
                         password=settings.redis_password.get_secret_value())
    yield client
    client.close()


@pytest.fixture(scope="session")
def city(stack):
    """The demo city (seed 7) loaded into the database, every device with a broker account."""
    from database.citydb import load_city
    from simulator.citygen import SCALES, generate

    city = generate(SCALES["demo"], seed=7)
    conn = psycopg2.connect(stack.settings().pg_dsn)
    try:
        load_city(conn, city)
    finally:
        conn.close()
    stack.register_devices(city)
    return city


@pytest.fixture
def ingest_listener(stack):
    """A probe logged in as the ingest service, subscribed to every uplink topic of ours."""
    from .mqtt_helpers import MqttProbe

    ingest = stack.account("ingest")
    probe = MqttProbe(stack.mosquitto.port, ingest.username, ingest.password)
    probe.subscribe("gcc/v1/#")
    yield probe
    probe.close()
