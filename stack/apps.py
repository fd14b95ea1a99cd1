"""The demo's own processes on top of the servers: the city's reference data, the demo's roster and
logins (simulator/), then the ingest workers, the device-facing HTTP service (`python -m
ingest.http`: OwnTracks, OsmAnd, the handheld), the dashboard, the cases engine (`python -m
casework`), the demo desk (`python -m simulator.desk`) and the simulator."""
from __future__ import annotations

import logging
import os
import shlex
import sys
import urllib.request
from pathlib import Path

import psycopg2

from config.settings import REPO_ROOT
from core.city import City
from database.citydb import device_accounts, load_city
from registry.broker import BrokerAdmin
from registry.devices import describe, sync_roles
from simulator import handheld, logins, roster
from simulator.citygen import SCALES, generate

from .process import ServerProcess, wait_until
from .stack import INGEST_WORKERS, LocalStack, free_port

log = logging.getLogger("stack")

DEFAULT_SIM_ARGS = "--speedup 1 --fault-rate 30 --malformed 0.002"
DEMO_TIME_SCALE = "0.1"
# the demo's categories in automatic mode: the engine offers them at once (people trapped, gas, SOS)
DEMO_AUTOMATIC = "elevator_entrapment,gas_over_threshold,sos"
DEFAULT_DEMO_PHONES = 24      # members whose phone (网格通) the simulator plays over HTTPS, not MQTT


def demo_city(stack: LocalStack) -> City:
    """The demo city, generated once into the data dir; every terminal and gateway of it gets its
    broker account (before the broker starts, all in one go)."""
    path = stack.data_dir / "city.json"
    if not path.exists():
        log.info("generating the demo city into %s", path)
        generate(SCALES["demo"]).save(path)
    city = City.load(path)
    new = stack.register_devices(city)
    if new:
        log.info("created broker accounts for %d terminals and gateways", new)
    return city


def load_into_database(city: City, dsn: str) -> None:
    """The city's reference data in the database, unless it is there already."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select name, seed from city_info")
            loaded = cur.fetchone()
        if loaded != (city.name, city.seed):
            log.info("loading the city into the database (%d grids, %d sensors)", len(city.grids), len(city.sensors))
            load_city(conn, city)
    finally:
        conn.close()


def follow_registry(stack: LocalStack, dsn: str) -> None:
    """The broker's device accounts as the registry in the database has them (members moved,
    devices retired while the demo ran, which the city file does not know), then every account's
    role as today's rules derive it (`python -m registry.devices sync-roles`: after an upgrade
    that added a message kind, the accounts the registry created at run time are allowed it too)."""
    conn = psycopg2.connect(dsn)
    try:
        moved, disabled = stack.follow_registry(*device_accounts(conn))
    finally:
        conn.close()
    if moved or disabled:
        log.info("broker accounts as the registry has them: %d terminals in their new grid, %d retired disabled",
                 moved, disabled)
    synced = sync_roles(dsn, BrokerAdmin.from_settings(stack.settings()))
    if synced.changed or synced.missing:
        log.info(describe(synced))


def demo_roster(city: City, dsn: str) -> int:
    """The demo's duty roster (simulator.roster) from yesterday on, where a day has none yet."""
    return roster.write(city, dsn)


def demo_phones(stack: LocalStack, city: City, dsn: str) -> int:
    """The demo's members with a phone (网格通) the simulator plays over the handheld's API
    (simulator.handheld): `DEMO_PHONES` of them (default DEFAULT_DEMO_PHONES), one per grid first,
    an enrolment code each until the simulator has used it; answers how many codes were made."""
    count = int(os.environ.get("DEMO_PHONES", DEFAULT_DEMO_PHONES))
    return handheld.enrol_demo_phones(dsn, city, stack.data_dir / handheld.PHONES_FILE, count)


def demo_logins(stack: LocalStack, city: City, dsn: str) -> tuple[list[tuple[str, str, str, str]], str]:
    """The local demo's logins (simulator.logins) with their passwords generated once and kept in
    the data dir, and a fresh wall token: ([(username, role, scope name, password)], token)."""
    passwords = stack.demo_passwords([login.username for login in logins.wanted(city)])
    return logins.ensure(dsn, city, passwords)


def demo_apps(stack: LocalStack, sim_args: str | None = None, ingest_port: int = 9108, metrics_port: int = 9128,
              dashboard_port: int = 8050, cases_port: int = 9148, desk: bool = True,
              http_metrics_port: int | None = None) -> list[ServerProcess]:
    """The demo's apps in the order they start; `desk=False` leaves the demo desk out (nobody but
    the engine and the people at the screens acts on cases). `ingest_port` is the device-facing
    HTTP service's; `http_metrics_port` its internal port (None: a free one)."""
    # each app gets where things are and only its own secrets (not the env file's: it has none)
    base = {**os.environ, "PYTHONUNBUFFERED": "1", "GCC_INGEST_HTTP_PORT": str(ingest_port),
            "GCC_INGEST_METRICS_PORT": str(metrics_port), "GCC_DASHBOARD_PORT": str(dashboard_port)}
    base = {k: v for k, v in base.items()
            if not (k.startswith("GCC_") and k.endswith(("PASSWORD", "SECRET_KEY", "LEDGER_KEY")))}
    # the demo's case clocks run ten times fast (the screens say so), and a simulated desk plays the
    # command center's staff (simulator/desk.py) while the simulator plays the members
    base.setdefault("GCC_CASES_TIME_SCALE", DEMO_TIME_SCALE)
    base.setdefault("GCC_DISPATCH_AUTOMATIC", DEMO_AUTOMATIC)
    args = shlex.split(sim_args if sim_args is not None else os.environ.get("SIM_ARGS", DEFAULT_SIM_ARGS))
    run = stack.run_dir
    workers = []
    for i in range(1, INGEST_WORKERS + 1):
        worker = ServerProcess(f"ingest-{i}", [sys.executable, "-m", "ingest", "--index", str(i)],
                               log_path=stack.log_dir / f"ingest-{i}.log", pid_path=run / f"ingest-{i}.pid",
                               env={**base, **stack.app_env("ingest", stack.account(f"ingest-{i}"))},
                               cwd=Path(REPO_ROOT))
        worker.ready_url = f"http://127.0.0.1:{metrics_port + i - 1}/healthz"
        workers.append(worker)
    # the devices' HTTP side: its own service (gunicorn), each process with its own ingest chain,
    # as the ingest's database role and Redis user, with no broker account (it logs devices in
    # with the broker's accounts file, and takes nothing from the broker)
    internal = http_metrics_port if http_metrics_port is not None else free_port()
    # the simulated phones (two connections each: what they send, their stream) and a browser on this
    # machine all come from 127.0.0.1, which the per-address cap would otherwise answer 429
    per_source = base.get("GCC_INGEST_HTTP_CONNECTIONS_PER_SOURCE",
                          str(2 * int(base.get("DEMO_PHONES", DEFAULT_DEMO_PHONES)) + 32))
    http = ServerProcess("ingest-http", [sys.executable, "-m", "ingest.http"], cwd=Path(REPO_ROOT),
                         log_path=stack.log_dir / "ingest-http.log", pid_path=run / "ingest-http.pid",
                         env={**base, **stack.app_env("ingest"), "GCC_INGEST_HTTP_METRICS_PORT": str(internal),
                              "GCC_INGEST_HTTP_CONNECTIONS_PER_SOURCE": per_source})
    http.ready_url = f"http://127.0.0.1:{internal}/healthz"
    workers.append(http)
    # what the command center sends to a member's terminal, copied to the outbox of each of the
    # member's phones (handheld.bridge: subscribes only, its own broker account)
    workers.append(ServerProcess("handheld-bridge", [sys.executable, "-m", "handheld.bridge"], cwd=Path(REPO_ROOT),
                                 log_path=stack.log_dir / "handheld-bridge.log",
                                 pid_path=run / "handheld-bridge.pid",
                                 env={**base, **stack.app_env("ingest", stack.account("handheld-bridge"))}))
    dashboard = ServerProcess("dashboard", [sys.executable, "-m", "dashboard"],
                              log_path=stack.log_dir / "dashboard.log", pid_path=run / "dashboard.pid",
                              env={**base, **stack.app_env("dashboard")}, cwd=Path(REPO_ROOT))
    dashboard.ready_url = f"http://127.0.0.1:{dashboard_port}/healthz"
    cases = ServerProcess("cases", [sys.executable, "-m", "casework"], log_path=stack.log_dir / "cases.log",
                          pid_path=run / "cases.pid", cwd=Path(REPO_ROOT),
                          env={**base, **stack.app_env("cases", stack.account("cases")),
                               "GCC_CASES_METRICS_PORT": str(cases_port)})
    cases.ready_url = f"http://127.0.0.1:{cases_port}/healthz"
    # the desk acts as the command center's staff through the cases engine's database role and
    # Redis user (no broker account: the engine's notifier tells the terminals)
    staff = [ServerProcess("desk", [sys.executable, "-m", "simulator.desk"], log_path=stack.log_dir / "desk.log",
                           pid_path=run / "desk.pid", env={**base, **stack.app_env("cases")},
                           cwd=Path(REPO_ROOT))] if desk else []
    return workers + [dashboard, cases, *staff,
                      ServerProcess("simulator", [sys.executable, "-m", "simulator", *args],   # devices: own accounts
                                    log_path=stack.log_dir / "simulator.log", pid_path=run / "simulator.pid",
                                    env={**base, **stack.public_env()}, cwd=Path(REPO_ROOT))]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def app_healthy(part) -> bool | None:
    """Whether an app answers its health URL (the supervisor's probe); None for a part without one
    (the servers, whose own checks run at their start, and the simulator)."""
    url = getattr(part, "ready_url", None)
    return _answers(url) if url else None


def wait_ready(apps: list[ServerProcess], timeout: float = 120.0) -> None:
    """Wait until every app that has a health URL answers 200 (fail early if one exits)."""
    for app in apps:
        url = app.ready_url
        if url:
            wait_until(lambda url=url: _answers(url), timeout=timeout, what=f"{app.name} at {url}", proc=app,
                       interval=0.3)
