"""Session fixtures: the real servers, started once per test session on free ports in temp dirs."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import psycopg2
import pytest
import redis

from database import roles
from database.migrate import migrate
from stack import LocalStack


@functools.cache
def demo_city():
    """The demo city (seed 7), generated once per test session."""
    from simulator.citygen import SCALES, generate

    return generate(SCALES["demo"], seed=7)


@pytest.fixture(scope="session")
def stack():
    # tempfile (not pytest's tmp_path) because pytest's temp root is private to root, and the
    # servers run as unprivileged accounts when the tests run as root.
    data_dir = Path(tempfile.mkdtemp(prefix="gridcc-test-"))
    data_dir.chmod(0o711)
    local = LocalStack(data_dir)
    local.register_devices(demo_city())   # before the broker starts: all in its file at once
    local.start()
    migrate(local.settings().pg_dsn)
    roles.ensure_roles(local.settings().pg_dsn, local.pg_app_passwords())
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

    city = demo_city()
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
    from telemetry.topics import AccountKind, uplink_filters

    from .mqtt_helpers import MqttProbe

    ingest = stack.service_account(AccountKind.INGEST, "ingest-listener")
    probe = MqttProbe(stack.mosquitto.port, ingest.username, ingest.password)
    for topic_filter in uplink_filters():
        probe.subscribe(topic_filter)
    yield probe
    probe.close()


# --- screens --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dashboard(stack, settings, city, tmp_path_factory):
    """The dashboard as its own process, with an ingest worker feeding the live bus."""
    from .ingest_helpers import fed_by_a_worker
    from .screens import Dashboard

    with fed_by_a_worker(stack, Dashboard(stack, tmp_path_factory.mktemp("dash") / "dashboard.log"), 96) as board:
        yield board


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    from .screens import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    context.close()
