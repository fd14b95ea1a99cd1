"""`python -m casework`: the cases engine (intake, escalation, offers, the case notices and announcements
to terminals, the members' dispatch status history, the assessment's rollups and patrols: kpis/, and
the ledger's moved-out deletion once a day: casework/moved_out.py);
`python -m casework seed`: the default time limits and the working calendar's days (this year, the one
before and the next), if missing.

The engine seeds what is missing at its start too, and serves `/healthz` (200 while its loop runs)
and `/metrics` on GCC_CASES_METRICS_PORT (internal: never expose it). Database settings as every
app reads them (GCC_PG_*), as the role gcc_cases; the broker as GCC_MQTT_* (the account `cases`,
which may only publish case notices and announcements).
"""
from __future__ import annotations

from core.lifecycle import block_stop_signals

block_stop_signals()      # before any thread starts (core.lifecycle)

import argparse
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cases.engine import MAX_SLEEP_S, Engine
from cases.notifier import Notifier
from casework.build import build, seed
from casework.moved_out import MovedOutDeletion
from config.settings import load_settings
from core.lifecycle import run_until_signalled
from database.citydb import CityWatch
from dispatch.history import StatusRecorder
from kpis.patrol import PatrolMaintainer
from kpis.rollup import RollupMaintainer

log = logging.getLogger("cases")


class _Collector:
    def __init__(self, engine: Engine, notifier: Notifier, rollups: RollupMaintainer,
                 deletion: MovedOutDeletion) -> None:
        self.engine = engine
        self.notifier = notifier
        self.rollups = rollups
        self.deletion = deletion

    def collect(self):
        counts = CounterMetricFamily("gcc_cases_intake", "inbox rows by outcome", labels=["outcome"])
        for name in ("opened", "merged", "linked", "skipped", "failed", "held", "applied", "refused"):
            counts.add_metric([name], self.engine.counts[name])
        yield counts
        offers = CounterMetricFamily("gcc_cases_offers", "offers expired, followed by the next, made in automatic "
                                     "mode", labels=["what"])
        for name in ("offers_expired", "offers_followed", "offers_automatic"):
            offers.add_metric([name.removeprefix("offers_")], self.engine.counts[name])
        yield offers
        yield CounterMetricFamily("gcc_cases_escalations", "escalation steps fired",
                                  value=self.engine.counts["escalations"])
        lags = sorted(self.engine.lags)
        p99 = lags[int(0.99 * (len(lags) - 1))] if lags else 0.0
        yield GaugeMetricFamily("gcc_cases_escalation_lag_p99_seconds", "p99 of how late steps fired", value=p99)
        notices = CounterMetricFamily("gcc_cases_notices", "case notices to terminals by outcome", labels=["outcome"])
        for name, value in self.notifier.counts.items():
            notices.add_metric([name], value)
        yield notices
        yield CounterMetricFamily("gcc_cases_kpi_folded", "cases folded into the assessment's rollups",
                                  value=self.rollups.folded)
        yield CounterMetricFamily("gcc_cases_moved_out_deleted", "residents deleted by the moved-out deletion job",
                                  value=self.deletion.deleted)


def serve(engine: Engine, notifier: Notifier, rollups: RollupMaintainer, deletion: MovedOutDeletion,
          port: int) -> ThreadingHTTPServer:
    registry = CollectorRegistry()
    registry.register(_Collector(engine, notifier, rollups, deletion))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/healthz":
                fresh = time.monotonic() - engine.heartbeat < 2 * MAX_SLEEP_S + 10
                body, code = (b"ok\n", 200) if fresh else (b"the loop has not run for a while\n", 503)
            elif self.path == "/metrics":
                body, code = generate_latest(registry), 200
            else:
                body, code = b"not found\n", 404
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="cases-http", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m casework", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="engine", choices=["engine", "seed"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    limits, days = seed(settings.pg_dsn, "cases engine" if args.command == "engine" else "cli")
    if limits or days:
        log.info("seeded %d time-limit rows and %d calendar days", limits, days)
    if args.command == "seed":
        return 0
    if settings.cases_time_scale != 1.0:
        log.warning("time scale %.4g: every limit and escalation delay runs as clock time, scaled (demo only)",
                    settings.cases_time_scale)
    engine = build(settings)
    CityWatch(settings.pg_dsn, engine.intake.city).start()   # registry changes: new members, moved devices
    notifier = Notifier(settings.pg_dsn, settings.mqtt_host, settings.mqtt_port, settings.mqtt_username,
                        settings.mqtt_password.get_secret_value(), engine.stop_event, engine.policy)
    rollups = RollupMaintainer(settings.pg_dsn, engine.stop_event)
    deletion = MovedOutDeletion(settings.pg_dsn, settings.ledger_moved_out_keep_days, engine.stop_event)
    server = serve(engine, notifier, rollups, deletion, settings.cases_metrics_port)   # its port first: chosen free
    sender = threading.Thread(target=notifier.run, name="case-notices", daemon=True)
    sender.start()
    recorder = StatusRecorder(settings.pg_dsn, settings.redis_client(socket_timeout=10), engine.intake.city,
                              engine.stop_event)
    threading.Thread(target=recorder.run, name="member-status", daemon=True).start()
    threading.Thread(target=rollups.run, name="kpi-rollups", daemon=True).start()
    patrols = PatrolMaintainer(settings.pg_dsn, engine.intake.city, engine.stop_event)
    threading.Thread(target=patrols.run, name="kpi-patrols", daemon=True).start()
    threading.Thread(target=deletion.run, name="moved-out-deletion", daemon=True).start()
    try:
        return run_until_signalled(engine.run, engine.stop_event)
    finally:
        server.shutdown()
        sender.join(10)


if __name__ == "__main__":
    sys.exit(main())
