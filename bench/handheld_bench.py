"""The members' handheld (网格通) under N phones:
`.venv/bin/python -m bench.handheld_bench [--phones 2000] [--seconds 60] [--reports 50] [--workers 2]`.

Starts its own stack (bench.harness) with a city of at least --phones members, the device-facing
service (`python -m ingest.http`, gunicorn, GCC_INGEST_HTTP_WORKERS = --workers processes), the
handheld bridge, the cases engine and the dashboard, as `make demo` starts them (stack.apps), but
no MQTT ingest workers, no desk and no simulator: the phones are the only load. Each of --phones
members gets a phone: a one-time code from the registry (DeviceRegistry.enrol_handheld), redeemed
in the database as POST /enrol redeems it (handheld_redeem, with one Argon2id hash of the PIN made
once for all, which saves N hashes of setup), then signed in through the service (POST /session,
its Argon2id check and its throttle). The phones are a lean driver on the simulator's own HTTP
client in a process of its own (bench.handheld_phones), each from its own loopback address.

Measured, in headless Chromium on the wall (a kiosk token) and the dispatcher console (a
city-wide dispatcher):
  fix -> wall        the fix's own time (set on the phone as it makes the fix) -> the fix applied to
                     the wall's state in the browser (as bench.wall_bench), p50/p99 over the run;
  report -> queue    the 1 MB photo's upload starts -> the report's case applied to the console's
                     state in the browser (its `where`, the report's address, names it), p50/p99;
  memory             RSS of the service's processes with every phone's stream open, minus with
                     every phone signed in and none open, divided by the streams;
  CPU                of each process (and its children) during the run, and of the machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import math
import multiprocessing as mp
import os
import platform
import random
import resource
import secrets
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import psycopg2
from argon2 import PasswordHasher
from PIL import Image
from playwright.sync_api import sync_playwright

from bench.handheld_phones import PhoneSpec, ReportPlan, serve, source_address
from bench.harness import BenchStack, percentile, progress
from casework.build import seed
from core.roles import UserRole
from dashboard.accounts import Accounts
from registry.handhelds import digest
from registry.store import Actor, DeviceRegistry
from simulator.citygen import Scale, generate
from stack import free_port
from stack.apps import demo_apps

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
APPS = ("ingest-http", "handheld-bridge", "cases", "dashboard")
PIN = "246810"
FIX_INTERVAL_S = 10.0
PHOTO_BYTES = 1_000_000
REPORT_CATEGORIES = ("exposed_garbage", "dirty_road", "illegal_parking", "water_leak", "noise")
MARKER = "bench-report-"

# the console's hook: when each of the bench's report cases is first applied to its state
# (from a frame, or from a snapshot when the console resyncs)
DISPATCH_HOOK = """marker => {
  const r = window.gcc.renderers.dispatch, frame = r.frame, fresh = r.fresh;
  window.benchSeen = {};
  const see = cases => {
    const now = Date.now() / 1000;
    (cases || []).forEach(c => {
      if (c.where && c.where.startsWith(marker) && !(c.where in window.benchSeen)) window.benchSeen[c.where] = now;
    });
  };
  r.frame = function (st, f) { see((f.changes || {}).case); return frame.call(this, st, f); };
  r.fresh = function (s) { see(s.cases); return fresh.call(this, s); };
}"""


# --- the machine: processes, their memory and CPU ------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(_children(p))
    return found


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return total


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total / 1024


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (all processes, all cores)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _name(pid: int, known: dict[int, str]) -> str:
    if pid in known:
        return known[pid]
    try:
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
    except OSError:
        return str(pid)
    return {"node": "playwright + chromium", "node-MainThread": "playwright + chromium", "postgres": "postgresql",
            "redis-server": "redis"}.get(comm, comm)


class Processes:
    """The bench's processes grouped as the report names them: each direct child of the bench with
    its descendants (the apps, the servers, the phones' driver, Playwright with Chromium)."""

    def __init__(self, known: dict[int, str]) -> None:
        self.known = known

    def groups(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for child in _children(os.getpid()):
            out.setdefault(_name(child, self.known), []).extend(tree(child))
        out["the bench itself"] = [os.getpid()]
        return out

    def cpu(self) -> dict[str, float]:
        return {name: cpu_s(pids) for name, pids in self.groups().items()}


# --- the city, the phones and the photos ---------------------------------------------------------
def make_city(phones: int):
    grids = max(30, math.ceil(phones / 4))           # "one grid, four members"
    return generate(Scale(1, 4, 5, grids, 0, (grids / 150) ** 0.5), seed=11)


def enrol_phones(dsn: str, city, count: int) -> list[PhoneSpec]:
    """A phone for each of the first `count` members (distinct grids first): the registry's code,
    redeemed as POST /enrol redeems it (handheld_redeem), with one PIN hash for all."""
    firsts, others, grids = [], [], set()
    for member in city.members:
        (others if member.grid_code in grids else firsts).append(member)
        grids.add(member.grid_code)
    members = (firsts + others)[:count]
    if len(members) < count:
        raise SystemExit(f"the city has {len(members)} members, fewer than {count} phones")
    registry, pin_hash = DeviceRegistry(dsn, None), PasswordHasher().hash(PIN)
    specs = []
    conn = psycopg2.connect(dsn)
    try:
        for i, member in enumerate(members):
            code = registry.enrol_handheld(Actor("bench"), member.member_id, "bench phone").code
            secret = secrets.token_urlsafe(32)
            with conn, conn.cursor() as cur:
                cur.execute("select device_id from handheld_redeem(%s, %s, %s, %s, %s)",
                            (digest(code), digest(secret), pin_hash, "bench phone", source_address(i)))
                (device_id,) = cur.fetchone()
            p = city.grid_by_code[member.grid_code].boundary.representative_point()
            specs.append(PhoneSpec(member.terminal_id, device_id, secret, PIN, p.x, p.y, source_address(i)))
    finally:
        conn.close()
    return specs


def write_sessions(dsn: str, specs: list[PhoneSpec]) -> list[PhoneSpec]:
    """The session rows POST /session writes (handheld.sessions.Sessions.sign_in: the token's
    sha256, 12 hours), for phones that skip the Argon2id check: the same phones afterwards."""
    out = []
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            for spec in specs:
                token = secrets.token_urlsafe(32)
                cur.execute("insert into handheld_sessions (token_sha256, device_id, expires_at, source) "
                            "values (%s, %s, now() + interval '12 hours', %s)", (digest(token), spec.device_id,
                                                                                  spec.address))
                out.append(dataclasses.replace(spec, token=token))
    finally:
        conn.close()
    return out


def make_photos(folder: Path, count: int) -> list[str]:
    """`count` different JPEGs of about 1 MB each (noise over a gradient: a camera's worth of detail)."""
    rng = random.Random(3)
    side = 1000
    base = Image.effect_noise((side, side), 64).convert("RGB")
    paths = []
    for n in range(count):
        image = base.copy()
        image.paste((rng.randrange(256), rng.randrange(256), rng.randrange(256)), (0, 0, 48, 48))
        quality = 92
        while True:
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality)
            if out.tell() <= PHOTO_BYTES * 1.1 or quality < 40:
                break
            quality -= 4
        path = folder / f"photo-{n}.jpg"
        path.write_bytes(out.getvalue())
        paths.append(str(path))
    return paths


def plan_reports(specs: list[PhoneSpec], count: int, seconds: float, photos: list[str]) -> list[ReportPlan]:
    """`count` reports spread evenly over the run, each from a phone of another grid first."""
    step = max(1, len(specs) // max(1, count))
    return [ReportPlan(at_s=(i + 0.5) * seconds / count, phone=(i * step) % len(specs), photo_path=photos[i],
                       marker=f"{MARKER}{i}", category=REPORT_CATEGORIES[i % len(REPORT_CATEGORIES)])
            for i in range(count)]


# --- the stack ----------------------------------------------------------------------------------
def start_apps(bench: BenchStack, workers: int) -> dict[str, object]:
    """The device-facing service, the bridge, the cases engine and the dashboard, as the demo starts
    them (stack.apps.demo_apps), with --workers processes for the service and reports never merged
    (each report its own case, as the bench finds it by its address)."""
    os.environ["GCC_INGEST_HTTP_WORKERS"] = str(workers)
    os.environ["GCC_CASES_MERGE_MINUTES"] = "0"
    apps = {a.name: a for a in demo_apps(bench.stack, sim_args="", ingest_port=free_port(), metrics_port=free_port(),
                                         dashboard_port=free_port(), cases_port=free_port(), desk=False,
                                         http_metrics_port=free_port())}
    chosen = [apps[name] for name in APPS]
    bench.adopt(chosen)
    for app in chosen:
        app.start()
    bench.wait_ready(chosen, timeout=180)
    return {name: apps[name] for name in APPS}


def open_pages(pw, dashboard_url: str, dsn: str):
    """The wall (a kiosk token) and the console (a city-wide dispatcher), each live, measuring."""
    password = secrets.token_urlsafe(12)
    accounts = Accounts(dsn, pool_size=1)
    accounts.add_user("bench-dispatcher", "Bench dispatcher", UserRole.DISPATCHER, "", password, created_by="bench")
    _, token = accounts.create_wall_token("handheld bench", "", created_by="bench")
    accounts.close()
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
    wall = browser.new_page(viewport={"width": 1920, "height": 1080})
    wall.goto(f"{dashboard_url}/wall?kiosk=1&token={token}")
    wall.wait_for_url(lambda u: "token" not in u)
    wall.wait_for_function("() => window.gcc.live && window.gcc.live.state('wall')", timeout=60000)
    console = browser.new_page(viewport={"width": 1920, "height": 1080})
    console.goto(f"{dashboard_url}/login")
    console.fill("input[name=username]", "bench-dispatcher")
    console.fill("input[name=password]", password)
    console.click("button[type=submit]")
    console.wait_for_url(lambda u: "/login" not in u)
    console.goto(f"{dashboard_url}/dispatch")
    console.wait_for_selector("#dispatch-conn.live", timeout=60000)
    console.evaluate(DISPATCH_HOOK, MARKER)
    return browser, wall, console


def _step(pipe, command: tuple, expect: str, timeout_s: float = 3600.0) -> dict:
    pipe.send(command)
    if not pipe.poll(timeout_s):
        raise TimeoutError(f"the phones' driver did not answer {command[0]!r}")
    answer, result = pipe.recv()
    if answer != expect:
        raise RuntimeError(f"the phones' driver answered {answer!r} to {command[0]!r}")
    return result


# --- the run ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phones", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--reports", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="the service's processes (GCC_INGEST_HTTP_WORKERS)")
    parser.add_argument("--sign-ins", type=int, default=None,
                        help="phones that sign in through POST /session (default: all); the others get the "
                             "session row a sign-in writes, from the bench (each sign-in is ~0.3 s of Argon2id)")
    parser.add_argument("--keep", action="store_true", help="keep the stack's data dir (its logs) at the end")
    args = parser.parse_args()
    if args.phones < 1 or args.seconds <= 0 or not 0 <= args.reports <= args.phones:
        parser.error("need --phones >= 1, --seconds > 0 and 0 <= --reports <= --phones")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))     # the service's processes inherit it
    progress(f"generating a city for {args.phones} phones, starting the stack ...")
    with BenchStack("handheld", city=make_city(args.phones), keep=args.keep) as bench:
        progress(f"the stack's data dir: {bench.data_dir}")
        seed(bench.dsn, "bench")
        photos = make_photos(Path(tempfile.mkdtemp(dir=bench.data_dir)), args.reports)
        apps = start_apps(bench, args.workers)
        progress(f"enrolling {args.phones} phones (registry codes, redeemed) ...")
        specs = enrol_phones(bench.dsn, bench.city, args.phones)
        if args.sign_ins is not None and args.sign_ins < args.phones:
            specs = specs[:args.sign_ins] + write_sessions(bench.dsn, specs[args.sign_ins:])
        results = measure(args, bench, apps, specs, plan_reports(specs, args.reports, args.seconds, photos))
    report(args, results)


def measure(args, bench: BenchStack, apps: dict, specs: list[PhoneSpec], plans: list[ReportPlan]) -> dict:
    service, port = apps["ingest-http"], int(apps["ingest-http"].env["GCC_INGEST_HTTP_PORT"])
    dashboard_url = apps["dashboard"].ready_url.rsplit("/", 1)[0]
    here, there = mp.get_context("spawn").Pipe()
    driver = mp.get_context("spawn").Process(target=serve, args=("127.0.0.1", port, specs, there), daemon=True)
    driver.start()
    known = {a.pid: name for name, a in apps.items()} | {driver.pid: "phones (driver)"}
    out = {"service_processes": len(tree(service.pid))}
    with sync_playwright() as pw:
        browser, wall, console = open_pages(pw, dashboard_url, bench.dsn)
        progress(f"signing {len(specs)} phones in through POST /session ...")
        out["sign_in"] = _step(here, ("sign_in",), "signed_in")
        out["rss_none_mb"] = rss_mb(tree(service.pid))
        progress(f"signed in: {out['sign_in']}; opening their downlink streams ...")
        out["streams"] = _step(here, ("streams",), "streams_open")
        out["rss_open_mb"] = rss_mb(tree(service.pid))
        progress(f"streams: {out['streams']}; running {args.seconds:.0f} s of fixes and {len(plans)} reports ...")
        wall.evaluate("() => { window.gcc.measure = {latencies: [], frameBytes: []}; }")
        processes = Processes(known)
        cpu0, machine0, load0, t0 = processes.cpu(), machine_cpu_s(), os.getloadavg(), time.monotonic()
        out["run"] = _step(here, ("run", args.seconds, FIX_INTERVAL_S, plans), "ran")
        elapsed = time.monotonic() - t0
        cpu1, machine1 = processes.cpu(), machine_cpu_s()
        out["rss_run_mb"] = rss_mb(tree(service.pid))
        out["load"] = (load0, os.getloadavg())
        out["cpu"] = {name: (cpu1.get(name, 0.0) - cpu0.get(name, 0.0)) / elapsed for name in cpu1}
        out["machine_cpu"] = (machine1 - machine0) / elapsed
        out["elapsed"] = elapsed
        out["seen"] = _wait_seen(console, out["run"]["reports"])
        out["latencies"] = [x * 1000 for x in wall.evaluate("() => window.gcc.measure.latencies")]
        out["stopped"] = _step(here, ("stop",), "stopped", 60)
        browser.close()
    driver.join(20)
    return out


def _wait_seen(console, reports: list[dict], timeout_s: float = 30.0) -> dict[str, float]:
    """The console's first sight of each report's case (waiting a little for the last ones)."""
    wanted = {r["marker"] for r in reports if r.get("report_status") == 200}
    deadline = time.monotonic() + timeout_s
    while True:
        seen = console.evaluate("() => window.benchSeen")
        if wanted <= set(seen) or time.monotonic() > deadline:
            return seen
        console.wait_for_timeout(250)


def report(args, r: dict) -> None:
    run, streams, sign_in = r["run"], r["streams"], r["sign_in"]
    lat = r["latencies"]
    queue = [(r["seen"][x["marker"]] - x["started"]) * 1000 for x in run["reports"] if x["marker"] in r["seen"]]
    opened = streams["open"]
    per_conn_kb = (r["rss_open_mb"] - r["rss_none_mb"]) * 1024 / opened if opened else float("nan")
    fixes = Counter({k: n for k, n in run["counts"].items() if k.startswith("fix:")})
    print(f"\nHandheld benchmark ({os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{datetime.now():%Y-%m-%d %H:%M})")
    print(f"  {args.phones} phones, a fix every {FIX_INTERVAL_S:.0f} s each, {args.seconds:.0f} s run, "
          f"{args.reports} reports with a {PHOTO_BYTES / 1e6:.0f} MB photo; device-facing service: "
          f"{args.workers} gunicorn workers ({r['service_processes']} processes with the master)")
    written = args.phones - sign_in["tried"]
    print(f"  signed in {sign_in['ok']}/{sign_in['tried']} through POST /session in {sign_in['seconds']:.0f} s "
          f"({sign_in['ok'] / max(sign_in['seconds'], 1e-9):.1f}/s){_failed(sign_in['failed'])}"
          + (f"; {written} more with session rows written by the bench (--sign-ins)" if written else ""))
    print(f"  downlink streams open: {opened}/{streams['wanted']} after {streams['seconds']:.1f} s; "
          f"at the run's end {run['open_streams']}{_failed(r['stopped']['stream_counts'])}")
    print(f"  fixes answered: {dict(sorted(fixes.items()))}; POST /messages/fix -> 200 "
          f"p50 {percentile(run['fix_answer_ms'], .5):.0f} ms, p99 {percentile(run['fix_answer_ms'], .99):.0f} ms")
    retries = {k: n for k, n in run["counts"].items() if "_retry" in k}
    if retries:
        print(f"  retried: {retries}")
    print(f"  fix -> wall over {len(lat):,} fixes: p50 {percentile(lat, .5):.0f} ms, p99 {percentile(lat, .99):.0f} ms"
          f"  (goal p99 < 1000 ms: {_held(lat, 1000)})")
    stored = sum(1 for x in run["reports"] if x.get("report_status") == 200)
    print(f"  report with a 1 MB photo -> dispatcher's queue over {len(queue)}/{args.reports} reports "
          f"({stored} stored): p50 {percentile(queue, .5):.0f} ms, p99 {percentile(queue, .99):.0f} ms"
          f"  (goal p99 < 2000 ms: {_held(queue, 2000) if len(queue) == args.reports else 'no: reports missing'})")
    uploads = [x["photo_s"] * 1000 for x in run["reports"]]
    print(f"    of it, the photo's upload -> 201: p50 {percentile(uploads, .5):.0f} ms, "
          f"p99 {percentile(uploads, .99):.0f} ms")
    print(f"  memory per open connection: {per_conn_kb:.1f} KB (service RSS {r['rss_none_mb']:.0f} MB signed in with "
          f"no stream, {r['rss_open_mb']:.0f} MB with {opened} open, {r['rss_run_mb']:.0f} MB at the run's end)")
    load0, load1 = r["load"]
    print(f"  machine: load average {load0[0]:.1f} -> {load1[0]:.1f}; busy {r['machine_cpu'] * 100:.0f} % of one "
          f"core over the run, of it ours {sum(r['cpu'].values()) * 100:.0f} %")
    print("  CPU during the run (% of one core): " + ", ".join(
        f"{name} {share * 100:.0f}" for name, share in sorted(r["cpu"].items(), key=lambda kv: -kv[1])))
    print(f"  the phones' driver: {run['cpu_s'] / r['elapsed'] * 100:.0f} % of one core")


def _failed(failed: dict) -> str:
    return f"; not: {failed}" if failed else ""


def _held(values: list[float], goal_ms: float) -> str:
    if not values:
        return "no data"
    return "holds" if percentile(values, .99) < goal_ms else "does NOT hold"


if __name__ == "__main__":
    main()
