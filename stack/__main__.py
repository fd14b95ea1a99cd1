"""`python -m stack up|down|status`: the local demo stack, supervised.

up      start PostgreSQL+TimescaleDB, Redis and Mosquitto, migrate the schema, load the demo city
        and (when there is none) its ledger of people, houses, parts and shops (simulator/ledger.py),
        (with --history-days N: N days of history for the KPIs, simulator/history.py, once), start the
        ingest workers, the dashboard and the simulator, report each part healthy,
        restart a part that crashes, and stop everything on Ctrl-C or SIGTERM.
down    stop a stack that `up` started (from its pid files), e.g. one left in another terminal.
status  say which parts are running.
disable-account NAME / enable-account NAME
        revoke a broker account (a lost or stolen handset) or restore it, on the running stack
        at once (its connection is dropped) and in the data dir for every later start.
users ...
        the screens' logins and wall tokens (dashboard.users) on this stack's database, e.g.
        `users add ana --role dispatcher --scope 350102002`, `users token-create lobby`.
devices ...
        the registry (registry.devices) on this stack: members, phones, gateways, sensors,
        e.g. `devices add-device M-0001 --kind owntracks --id ot-0001 --otrc phone.otrc`.

Every process of the stack (the supervisor too) leaves a pid file in `<data dir>/run/` that says
how to recognise and stop it (stack.process.PidRecord); `down` and `status` act on whatever pid
files they find there, so a new server or app needs no change here.
"""
from __future__ import annotations

from core.lifecycle import block_stop_signals

# Before any import that may start a thread (numpy's BLAS pool does): threads inherit the blocked
# stop signals, so SIGTERM/SIGINT reach only the sigwait in the main thread (core.lifecycle).
block_stop_signals()

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2

from config.settings import DEFAULT_DATA_DIR, load_settings
from core.lifecycle import STOP_SIGNALS
from database import roles, timescale
from database.migrate import migrate

from .apps import (
    app_healthy,
    demo_apps,
    demo_city,
    demo_logins,
    demo_phones,
    demo_roster,
    follow_registry,
    load_into_database,
    wait_ready,
)
from .process import (
    PRIVATE_UMASK,
    PidRecord,
    live_record,
    pid_files,
    read_pid_file,
    stop_recorded,
    write_pid_file,
)
from .stack import INGEST_WORKERS, LocalStack, free_port, port_is_free
from .supervision import Supervisor

log = logging.getLogger("stack")
SUPERVISOR_IDENTITY = ("stack", "up")  # what the supervisor's command line contains
SUPERVISOR_STOP_TIMEOUT = 60.0  # seconds for `down` to wait while the supervisor stops everything
LEFTOVER_STOP_TIMEOUT = 30.0  # seconds for `down` to wait for the parts of a supervisor killed outright


def _pick_port(preferred: int, what: str) -> int:
    if port_is_free(preferred):
        return preferred
    port = free_port()
    log.warning("port %d for %s is taken; using %d instead", preferred, what, port)
    return port


def _pick_ports(first: int, count: int, what: str) -> int:
    """The first of `count` consecutive free ports, `first` if they are all free."""
    if all(port_is_free(first + i) for i in range(count)):
        return first
    while True:
        start = free_port()
        if all(port_is_free(start + i) for i in range(count)):
            log.warning("ports %d-%d for %s are taken; using %d-%d", first, first + count - 1, what, start,
                        start + count - 1)
            return start


def _supervisor_pid_path(data_dir: Path) -> Path:
    return data_dir / "run" / "stack.pid"


def _report(stack: LocalStack, caps: timescale.Capabilities, city, apps, logins, ledger: tuple[str, str]) -> None:
    rows = [
        ("PostgreSQL 15 + TimescaleDB", f"127.0.0.1:{stack.postgres.port}",
         f"healthy, TimescaleDB {caps.version} ({caps.edition} edition)"),
        ("Redis 7", f"127.0.0.1:{stack.redis.port}", "healthy (PING with password)"),
        ("Mosquitto 2", f"127.0.0.1:{stack.mosquitto.port}",
         f"healthy ({len(stack.accounts)} accounts; subscription ACLs enforced)"),
    ]
    rows.append(("City reference data", f"{len(city.grids)} grids",
                 f"{city.name}: {len(city.members)} members, {len(city.sensors)} sensors"))
    rows.append(("Ledger (basic data)", *ledger))
    for app in apps:
        where = urlsplit(app.ready_url).netloc if app.ready_url else f"pid {app.pid}"
        rows.append((app.name, where, ("healthy" if app.ready_url else "running") + f", log {app.log_path.name}" +
                     (" (/metrics, /healthz)" if app.name.startswith("ingest-") or app.name == "cases" else "") +
                     (f"; devices' HTTP on {app.env['GCC_INGEST_HTTP_PORT']}" if app.name == "ingest-http" else "")))
    print("\nGrid Command Center - local stack")
    for name, where, state in rows:
        print(f"  {name:<30} {where:<18} {state}")
    dashboard = next((a for a in apps if a.name == "dashboard"), None)
    if dashboard is not None:
        users, token = logins
        base = dashboard.ready_url.removesuffix("/healthz")
        print(f"\n  Open the dashboard:     {base}/wall   (sign in with a demo login below)"
              f"\n  kiosk wall (no login):  {base}/wall?kiosk=1&token={token}"
              "\n  demo logins, passwords as first set (local demo only; `python -m stack users` manages them):")
        for username, role, scope, password in users:
            print(f"    {username:<22} {password:<18} {role:<12} {scope}")
    print(f"\n  settings for clients: {stack.data_dir / 'stack.env'}  (demo credentials only)")
    print(f"  logs:                 {stack.log_dir}")
    print("\nPress Ctrl-C to stop everything.\n", flush=True)


def up(data_dir: Path, once: bool = False, history_days: int = 0) -> int:
    os.umask(PRIVATE_UMASK)   # what the stack writes (pid files, logs, configs) is private to it
    settings = load_settings(data_dir=data_dir)
    pid_path = _supervisor_pid_path(data_dir)
    running = live_record(pid_path)
    if running is not None and running.pid != os.getpid():
        print(f"the stack is already running (supervisor pid {running.pid}); `make stop` stops it",
              file=sys.stderr)
        return 1
    stack = LocalStack(data_dir,
                       mqtt_port=_pick_port(settings.mqtt_port, "MQTT"),
                       redis_port=_pick_port(settings.redis_port, "Redis"),
                       pg_port=_pick_port(settings.pg_port, "PostgreSQL"))
    # Ctrl-C and SIGTERM are taken with sigwait in the loop below (see core.lifecycle): during
    # start-up they wait until everything is up, then everything stops in order.
    write_pid_file(pid_path, PidRecord(os.getpid(), SUPERVISOR_IDENTITY, signal.SIGTERM))
    retention = None
    apps = []
    try:
        city = demo_city(stack)   # its devices' broker accounts go in before the broker starts
        stack.start()
        dsn = stack.settings().pg_dsn
        caps, retention = _prepare_database(stack, dsn, timescale.retention_from_settings(settings))
        load_into_database(city, dsn)
        ledger = _demo_ledger(stack, city, dsn)
        follow_registry(stack, dsn)
        logins = demo_logins(stack, city, dsn)
        demo_roster(city, dsn)
        demo_phones(stack, city, dsn)
        if history_days:
            from simulator import history

            written = history.generate(dsn, history.Plan(days=history_days))
            log.info("history: %d cases, %d events, %d fixes, %d alarms", written.cases, written.events,
                     written.fixes, written.alarms)
        ingest_port = _pick_port(settings.ingest_http_port, "the devices' HTTP service")
        http_metrics_port = _pick_ports(settings.ingest_http_metrics_port, settings.ingest_http_workers,
                                        "the devices' HTTP service's metrics")
        metrics_port = _pick_ports(settings.ingest_metrics_port, INGEST_WORKERS, "ingest metrics")
        dashboard_port = _pick_port(settings.dashboard_port, "the dashboard")
        cases_port = _pick_port(settings.cases_metrics_port, "the cases engine's health")
        apps = demo_apps(stack, ingest_port=ingest_port, metrics_port=metrics_port, dashboard_port=dashboard_port,
                         cases_port=cases_port, http_metrics_port=http_metrics_port)
        for app in apps:
            app.start()
        wait_ready(apps)
        _report(stack, caps, city, apps, logins, ledger)
        supervisor = Supervisor([*stack.servers(), *apps], probe=app_healthy)
        while not once and signal.sigtimedwait(STOP_SIGNALS, 1.0) is None:
            supervisor.stop_unhealthy(time.monotonic())
            supervisor.restart_crashed(time.monotonic())
    finally:
        print("stopping ...", flush=True)
        for app in reversed(apps):
            app.stop()
        if retention is not None:
            retention.stop()
        stack.stop()
        pid_path.unlink(missing_ok=True)
        print("stopped.", flush=True)
    return 0


def _demo_ledger(stack: LocalStack, city, dsn: str) -> tuple[str, str]:
    """The demo city's ledger (simulator.ledger), loaded once after the city when the ledger is
    empty, sealed with the stack's ledger key; (where, state) for the start report."""
    from simulator.ledger import load_demo_ledger

    conn = psycopg2.connect(dsn)
    try:
        log.info("ledger: the demo city's ledger (people, houses, parts, shops), loaded if there is none ...")
        counts = load_demo_ledger(conn, city, stack.app_env("ingest")["GCC_LEDGER_KEY"],
                                  progress=lambda c: log.info("ledger: %d residents so far", c.residents))
        if counts is not None:
            log.info("ledger: loaded %s in %.1f s", counts.line(), counts.seconds)
            return (f"{counts.residents:,} residents", f"loaded now in {counts.seconds:.0f} s: {counts.households:,} "
                    f"households, {counts.houses:,} houses, {counts.things:,} parts, {counts.units:,} shops")
        with conn.cursor() as cur:
            cur.execute("select (select count(*) from residents), (select count(*) from houses), "
                        "(select count(*) from things)")
            residents, houses, things = cur.fetchone()
        conn.rollback()
        return f"{residents:,} residents", f"kept from the last start: {houses:,} houses, {things:,} parts"
    finally:
        conn.close()


def _prepare_database(stack: LocalStack, dsn: str, keep) -> tuple[timescale.Capabilities,
                                                                   timescale.RetentionJob | None]:
    """Migrate; give each app its role; install the edition's policies, or start our own retention
    job (Apache edition)."""
    for migration in migrate(dsn):
        log.info("applied migration %04d_%s", migration.version, migration.name)
    roles.ensure_roles(dsn, stack.pg_app_passwords())
    conn = psycopg2.connect(dsn)
    try:
        caps = timescale.apply_policies(conn, keep)
    finally:
        conn.close()
    if caps.has_policies:
        return caps, None
    retention = timescale.RetentionJob(dsn, keep)
    retention.start()
    return caps, retention


def down(data_dir: Path) -> int:
    """Stop the supervisor, which stops its parts in order; then whatever its pid files say is
    left (the parts of a supervisor killed outright), newest first. Stale, old-format and garbled
    pid files are removed; a pid whose command line does not match its file is never signalled."""
    stopped = stop_recorded([_supervisor_pid_path(data_dir)], SUPERVISOR_STOP_TIMEOUT)
    stopped += stop_recorded(reversed(pid_files(data_dir / "run")), LEFTOVER_STOP_TIMEOUT)
    print("stopped." if stopped else "nothing was running.")
    return 0


def status(data_dir: Path) -> int:
    """One line per pid file, in the order the parts started; exit code 3 when nothing runs."""
    running = 0
    paths = pid_files(data_dir / "run")
    for path in paths:
        record = read_pid_file(path)
        if record is None:
            state = "unknown (unreadable pid file)"
        elif record.is_running():
            state = f"running, pid {record.pid}"
            running += 1
        else:
            state = "stopped (stale pid file)"
        print(f"  {path.stem:<10} {state}")
    if not paths:
        print("  nothing is running.")
    return 0 if running else 3


def set_account_disabled(data_dir: Path, username: str, disabled: bool) -> int:
    """Revoke or restore `username` on the stack in `data_dir` (running or not)."""
    written = _written_env(data_dir)
    stack = LocalStack(data_dir, mqtt_port=int(written.get("GCC_MQTT_PORT", 0)) or None)
    if username not in stack.accounts:
        print(f"no broker account {username!r} in {data_dir}", file=sys.stderr)
        return 2
    stack.set_account_disabled(username, disabled)
    print(f"{username}: {'disabled' if disabled else 'enabled'}")
    return 0


def _written_env(data_dir: Path) -> dict[str, str]:
    env_file = data_dir / "stack.env"
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                if "=" in line and not line.startswith("#")) if env_file.exists() else {}


def _as_owner(data_dir: Path) -> bool:
    """This process's environment: the running stack's owner settings (False: none is running)."""
    if live_record(_supervisor_pid_path(data_dir)) is None:
        print(f"no demo stack is running in {data_dir}: start it with `make demo` (another data dir: set "
              "GCC_DATA_DIR)", file=sys.stderr)
        return False
    written = _written_env(data_dir)
    stack = LocalStack(data_dir, pg_port=int(written.get("GCC_PG_PORT", 0)) or None,
                       mqtt_port=int(written.get("GCC_MQTT_PORT", 0)) or None)
    os.environ.update(stack.env())
    return True


def users(data_dir: Path, argv: list[str]) -> int:
    """dashboard.users against this stack's database, as its owner (the stack must be running)."""
    if not _as_owner(data_dir):
        return 2
    from dashboard.users import main as users_main

    return users_main(argv)


def devices(data_dir: Path, argv: list[str]) -> int:
    """registry.devices on this stack: its database as the owner, its broker as the broker admin."""
    if not _as_owner(data_dir):
        return 2
    from registry.devices import main as devices_main

    return devices_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("users", "devices"):
        data_dir = Path(os.environ.get("GCC_DATA_DIR", DEFAULT_DATA_DIR)).resolve()
        return (users if argv[0] == "users" else devices)(data_dir, argv[1:])
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "status", "disable-account", "enable-account"))
    parser.add_argument("username", nargs="?", help="the broker account (disable-account, enable-account)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("GCC_DATA_DIR", DEFAULT_DATA_DIR)))
    parser.add_argument("--once", action="store_true", help="start, report, then stop (a smoke test)")
    parser.add_argument("--history-days", type=int, default=0, help="load this many days of history for the KPIs "
                        "(once: a later start with a history loaded adds none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = args.data_dir.resolve()
    if args.command == "up":
        return up(data_dir, once=args.once, history_days=args.history_days)
    if args.command == "down":
        return down(data_dir)
    if args.command in ("disable-account", "enable-account"):
        if not args.username:
            parser.error(f"{args.command} needs the account's username")
        return set_account_disabled(data_dir, args.username, args.command == "disable-account")
    return status(data_dir)


if __name__ == "__main__":
    sys.exit(main())
