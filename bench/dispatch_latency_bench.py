"""Click → terminal: how long from a dispatcher's Enter on the console to the member's terminal
holding the offer, idle and under the demo's load, side by side in one run.

    .venv/bin/python -m bench.dispatch_latency_bench [--trials 40]

Starts its own local stack (temp dir, free ports) with everything `make demo` runs (two ingest
workers, the cases engine with its notifier, the dashboard; the demo desk off, so nobody else
dispatches, and reports never merged, so each trial is a case of its own), the demo city, and a
dispatcher signed in to /dispatch in headless Chromium.

A trial: a probe terminal (a grid administrator's, its own MQTT connection, not simulated) reports
an incident where it stands; the case appears in the console's queue; the bench chooses it,
registers it, waits for the candidates (the probe first: it stands on the spot), and then
measures from pressing Enter to the probe's terminal receiving the `dispatched` notice (the
notice's own time splits it: Enter → the offer committed by the dashboard, then → the terminal,
through the outbox, the cases engine's notifier and the broker). A probe rejects every offer at
once (the engine offers the case to the next candidate), so it stays free and first for its spot.

Phase 1 runs with the simulator stopped; phase 2 with the simulator playing the demo's fleet
(every terminal but the probes and every gateway, `make demo`'s settings), after a warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import secrets
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

import orjson
import paho.mqtt.client as mqtt
import psycopg2
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from playwright.sync_api import sync_playwright

from bench.harness import BenchStack, progress
from casework.build import seed
from core.catalogue import INCIDENT_CATEGORIES, CaseState
from core.roles import Role, UserRole
from dashboard.accounts import Accounts
from simulator import payloads
from simulator.citygen import SCALES, generate
from stack import free_port
from stack.apps import DEFAULT_SIM_ARGS, demo_apps
from telemetry.notices import CaseNotice, NoticeKind
from telemetry.topics import CASE, INCIDENT, NOTICE, terminal_topic

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PROBES = 10


class Probe:
    """A grid administrator's terminal, driven by the bench: stands at its grid's centre."""

    def __init__(self, port: int, member, password: str, lon: float, lat: float) -> None:
        self.member, self.lon, self.lat = member, lon, lat
        self.notices: queue.Queue = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=member.terminal_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.username_pw_set(member.terminal_id, password)
        self.client.on_message = lambda c, u, msg: self._on_notice(time.time(), msg.payload)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(terminal_topic(member.terminal_id, NOTICE), qos=1)
        self.fix()

    def _on_notice(self, at: float, payload: bytes) -> None:
        """Every offer is rejected at once (the measured ones, and the engine's follow-ups to the
        other probes), so each probe stays free and first for its own spot."""
        self.notices.put((at, payload))
        notice = CaseNotice.parse(self.member.terminal_id, payload)
        if notice.kind is NoticeKind.DISPATCHED:
            self.reject(notice.case_id)

    def fix(self) -> None:
        self.client.publish(*payloads.fix(self.member.terminal_id, datetime.now(timezone.utc), self.lon, self.lat,
                                          5.0, 0.0, 0.0, 90), qos=1)

    def report(self, report_id: str, category: str) -> None:
        body = {"ts": datetime.now(timezone.utc).isoformat(), "report_id": report_id, "category": category,
                "severity": 2, "lat": self.lat, "lon": self.lon, "description": "dispatch latency bench"}
        self.client.publish(terminal_topic(self.member.terminal_id, INCIDENT), orjson.dumps(body), qos=1)

    def reject(self, case_id: str) -> None:
        body = {"ts": datetime.now(timezone.utc).isoformat(), "case_id": case_id, "action": "reject",
                "reason": "bench: measured, handing it on"}
        self.client.publish(terminal_topic(self.member.terminal_id, CASE), orjson.dumps(body), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _case_of(dsn: str, probe: Probe, report_id: str) -> str | None:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select case_id from case_sources where kind = 'report' and key = %s",
                        (f"{probe.member.terminal_id}/{report_id}",))
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


def _backlog(dsn: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select count(*) from case_notices where sent_at is null")
            return cur.fetchone()[0]
    finally:
        conn.close()


def _state(dsn: str, case_id: str) -> str | None:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select state from cases where case_id = %s", (case_id,))
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


def _until(what: str, test, timeout: float = 30.0, interval: float = 0.05, fail: bool = True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = test()
        if value:
            return value
        time.sleep(interval)
    if fail:
        raise TimeoutError(what)
    return None


def trial(page, dsn: str, probe: Probe, n: int) -> tuple[float, float]:
    """(Enter → terminal, Enter → the offer's time) in ms, for one case."""
    category = list(INCIDENT_CATEGORIES)[n % len(INCIDENT_CATEGORIES)]
    report_id = f"BENCH-{n}-{secrets.token_hex(3)}"
    time.sleep(0.3)                       # its fix stored first
    began = time.monotonic()
    probe.report(report_id, category)
    case_id = _until("the report's case", lambda: _case_of(dsn, probe, report_id), timeout=120)
    opened = time.monotonic()
    # chosen as the ↑↓ keys choose (under load the queue holds hundreds of alarm cases nobody
    # registers, the desk being off: the new case need not be among the screenful shown)
    page.evaluate("id => window.dash_clientside.set_props('dispatch-selected', {data: id})", case_id)
    for _ in range(6):                    # Enter registers a reported case (its button, once it is shown)
        page.wait_for_selector(".dispatch-register", timeout=60000)
        page.keyboard.press("Enter")
        if _until("registered", lambda: _state(dsn, case_id) == CaseState.REGISTERED, timeout=10, fail=False):
            break
    registered = time.monotonic()
    try:
        page.wait_for_selector("#dispatch-cand-1 .dispatch-offer-button", timeout=60000)
    except Exception:
        raise RuntimeError(f"no candidates for {case_id} ({_state(dsn, case_id)}): "
                           f"{page.inner_text('#dispatch-candidates')!r}") from None
    if probe.member.name not in page.inner_text("#dispatch-cand-1"):
        raise RuntimeError(f"candidate 1 is not the probe: {page.inner_text('#dispatch-cand-1')!r}")
    while not probe.notices.empty():
        probe.notices.get_nowait()
    listed = time.monotonic()
    print(f"    report -> case {opened - began:.1f} s, -> registered {registered - opened:.1f} s, "
          f"-> candidates {listed - registered:.1f} s", file=sys.stderr, flush=True)
    pressed = time.time()
    page.keyboard.press("Enter")
    while True:
        try:
            got, payload = probe.notices.get(timeout=30)
        except queue.Empty:
            raise RuntimeError(f"no offer for {case_id} within 30 s: the console said "
                               f"{page.inner_text('#dispatch-result')!r}; {_backlog(dsn)} notices unsent") from None
        notice = CaseNotice.parse(probe.member.terminal_id, payload)
        if notice.case_id == case_id and notice.kind is NoticeKind.DISPATCHED:
            break
    return (got - pressed) * 1000, (notice.time.timestamp() - pressed) * 1000


def phase(page, dsn: str, probes: list[Probe], trials: int, offset: int) -> list[tuple[float, float]]:
    out = []
    for i in range(trials):
        probe = probes[i % len(probes)]
        probe.fix()                         # fresh: a candidate has a fix from the last 2 minutes
        started = time.monotonic()
        out.append(trial(page, dsn, probe, offset + i))
        print(f"  trial {i + 1}/{trials}: {out[-1][0]:.0f} ms (the trial took {time.monotonic() - started:.1f} s, "
              f"load average {os.getloadavg()[0]:.1f})",
              file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40, help="per phase")
    parser.add_argument("--warm-up", type=float, default=45.0, help="seconds of simulator load before phase 2")
    args = parser.parse_args()
    progress("starting the stack, loading the demo city ...")
    city = generate(SCALES["demo"], seed=7)
    probes: list[Probe] = []
    with BenchStack("dispatchlat", city=city, save_city=True) as bench:
        bench.at_close(lambda: [probe.close() for probe in probes])
        stack, dsn, data = bench.stack, bench.dsn, bench.data_dir
        seed(dsn, "bench")
        grids = city.grids[5::max(1, len(city.grids) // PROBES)][:PROBES]
        chosen = [next(m for m in city.members if m.grid_code == g.code and m.role is Role.GRID_ADMINISTRATOR)
                  for g in grids]
        accounts = json.loads(stack.accounts_path.read_text())
        simulated = data / "simulated-accounts.json"       # the simulator plays everyone but the probes
        simulated.write_text(json.dumps([a for a in accounts if a["username"] not in {m.terminal_id for m in chosen}]))
        os.environ["GCC_CASES_MERGE_MINUTES"] = "0"        # each trial's report its own case (same spot, same probe)
        base = free_port()
        apps = demo_apps(stack, sim_args=f"{DEFAULT_SIM_ARGS} --city {data / 'city.json'} --accounts {simulated}",
                         ingest_port=base, metrics_port=free_port(), dashboard_port=free_port(),
                         cases_port=free_port(), desk=False)             # nobody else dispatches
        bench.adopt(apps)
        *servers, simulator = apps
        for app in servers:
            app.start()
        bench.wait_ready(servers)
        password = secrets.token_urlsafe(12)
        logins = Accounts(dsn, pool_size=1)
        logins.add_user("bench", "Bench dispatcher", UserRole.DISPATCHER, "", password, created_by="bench")
        logins.close()
        for m, g in zip(chosen, grids, strict=True):
            p = g.boundary.representative_point()
            probes.append(Probe(stack.mosquitto.port, m, stack.account(m.terminal_id).password, p.x, p.y))
        dashboard = next(a for a in servers if a.name == "dashboard").ready_url.rsplit("/", 1)[0]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(f"{dashboard}/login")
            page.fill("input[name=username]", "bench")
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url(lambda u: "/login" not in u)
            page.goto(f"{dashboard}/dispatch")
            page.wait_for_selector("#dispatch-conn.live", timeout=30000)
            progress(f"phase 1: idle, {args.trials} trials ...")
            phase(page, dsn, probes, 3, 10_000)           # warm the paths (not counted)
            idle = phase(page, dsn, probes, args.trials, 0)
            progress(f"phase 2: starting the simulator (the demo's fleet), {args.warm_up:.0f} s warm-up ...")
            simulator.start()
            time.sleep(args.warm_up)
            top = subprocess.run(["top", "-b", "-n", "1", "-o", "%CPU"], capture_output=True, text=True).stdout
            progress("the busiest processes under load:\n" + "\n".join(top.splitlines()[6:16]))
            loaded = phase(page, dsn, probes, args.trials, 1000)
            browser.close()
    terminals = sum(1 for m in city.members) - len(probes)
    print(f"\nDispatch latency, Enter on the console -> the terminal holds the offer "
          f"({os.cpu_count()} cores, {platform.python_version()}, {datetime.now():%Y-%m-%d %H:%M})")
    for name, rows in (("idle (simulator stopped)", idle),
                       (f"demo load ({terminals} terminals, {len(city.gateways)} gateways simulated)", loaded)):
        total, committed = [r[0] for r in rows], [r[1] for r in rows]
        print(f"  {name}, {len(rows)} trials:")
        print(f"    Enter -> terminal  p50 {_percentile(total, .5):6.0f} ms   p99 {_percentile(total, .99):6.0f} ms   "
              f"mean {statistics.mean(total):6.0f} ms")
        print(f"    of it, Enter -> offer committed  p50 {_percentile(committed, .5):4.0f} ms; "
              f"committed -> terminal  p50 {_percentile([t - c for t, c in rows], .5):4.0f} ms")
    ratio = _percentile([r[0] for r in loaded], .5) / _percentile([r[0] for r in idle], .5)
    print(f"  p50 under load / idle: {ratio:.2f}")


if __name__ == "__main__":
    main()
