"""The wall display under load: `.venv/bin/python -m bench.wall_bench [--members 10000] [--rate 2000]`.

Starts its own stack, a city with `--members` members (all with a live position), one ingest
worker and the dashboard, then in headless Chromium measures:
  first paint   navigation start → every member of the city drawn from the snapshot
  frames        bytes per Socket.IO frame while `--rate` fixes/s are published (QoS 1) by
                `--terminals` terminals, each on its own MQTT connection
  latency       publish (the fix's own timestamp) → applied in the browser, p50 / p99
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import datetime, timezone

import redis
from playwright.sync_api import sync_playwright

from bench.harness import BenchStack, percentile, progress
from dashboard.accounts import Accounts
from ingest.live import LiveState
from ingest.model import Enriched
from simulator import payloads
from simulator.citygen import Scale, generate
from simulator.mqttmux import DeviceConnection, Mux
from stack import free_port
from telemetry.messages import Fix

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=2000, help="fixes per second during the frame test")
    parser.add_argument("--terminals", type=int, default=2000, help="publishing terminals (connections)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--frame-interval", type=float, default=0.5, help="GCC_FRAME_INTERVAL_S of the dashboard")
    args = parser.parse_args()

    progress("starting the stack and loading the city ...")
    grids = args.members // 4
    city = generate(Scale(6, 6, 7, grids, 0, 3.7 * (grids / 2000) ** 0.5), seed=5)
    with BenchStack("wall", city=city) as bench:
        stack, settings = bench.stack, bench.settings()
        r = redis.Redis(host="127.0.0.1", port=stack.redis.port, password=settings.redis_password.get_secret_value())
        rng, now = random.Random(1), datetime.now(timezone.utc)
        items = []
        for m in city.members:
            p = city.grid_by_code[m.grid_code].boundary.representative_point()
            items.append(Enriched(Fix(terminal_id=m.terminal_id, time=now, lat=p.y, lon=p.x, source="gcc",
                                      battery_pct=rng.randint(20, 100)), m.grid_code, m.member_id,
                                  home_grid_code=m.grid_code))
        writer = LiveState(r)
        writer.ensure_schema()
        writer.apply(items)

        env = {**stack.env(), "GCC_INGEST_HTTP_PORT": str(free_port()),
               "GCC_INGEST_METRICS_PORT": str(free_port()),
               "GCC_DASHBOARD_PORT": str(free_port()),
               "GCC_FRAME_INTERVAL_S": str(args.frame_interval)}
        ingest = bench.app("ingest", ["ingest", "--index", "1"], env=env)
        bench.app("dashboard", ["dashboard"], env=env,
                  ready_url=f"http://127.0.0.1:{env['GCC_DASHBOARD_PORT']}/healthz", timeout=90)
        url = f"http://127.0.0.1:{env['GCC_DASHBOARD_PORT']}/wall?kiosk=1"
        accounts = Accounts(settings.pg_dsn, pool_size=1)
        _, token = accounts.create_wall_token("wall bench", "", created_by="bench")   # a wall signs in by token
        accounts.close()
        ingest.ready_url = f"http://127.0.0.1:{env['GCC_INGEST_METRICS_PORT']}/healthz"
        bench.wait_ready([ingest], timeout=90)

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(f"{url}&token={token}")            # once: the session cookie; the loads below are plain
            page.wait_for_url(lambda u: "token" not in u)
            progress("measuring first paint (3 loads) ...")
            paints = []
            for _ in range(3):
                start = time.perf_counter()
                page.goto(url)
                page.wait_for_function(f"() => {{ const st = window.gcc.live && window.gcc.live.state('wall');"
                                       f" return st && st.members.size >= {len(city.members)}; }}",
                                       timeout=60000)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                paints.append(time.perf_counter() - start)
            page.evaluate("() => { window.gcc.measure = {latencies: [], frameBytes: []}; }")
            progress(f"publishing {args.rate}/s for {args.seconds:.0f} s from {args.terminals} terminals ...")
            sent = _publish(stack, city, args)
            time.sleep(2)
            measured = page.evaluate("() => window.gcc.measure")
            browser.close()
    lat = [x * 1000 for x in measured["latencies"]]
    frames = measured["frameBytes"]
    print(f"\nWall display benchmark ({os.cpu_count()} cores, {datetime.now():%Y-%m-%d %H:%M})")
    print(f"  first paint, {len(city.members):,} members drawn: "
          f"median {statistics.median(paints):.2f} s (runs: {', '.join(f'{p:.2f}' for p in paints)})")
    print(f"  published {sent:,} fixes at a target of {args.rate}/s from {args.terminals} terminals "
          f"in {args.seconds:.0f} s; frames received: {len(frames)}")
    print(f"  frame interval {args.frame_interval} s")
    print(f"  bytes per frame: median {statistics.median(frames):,.0f}, max {max(frames):,}")
    print(f"  publish -> browser latency over {len(lat):,} fixes: p50 {percentile(lat, .5):.0f} ms, "
          f"p99 {percentile(lat, .99):.0f} ms")


def _publish(stack, city, args) -> int:
    """`--rate` fixes/s from `--terminals` real terminal connections for `--seconds`."""
    mux = Mux("127.0.0.1", stack.mosquitto.port)
    members = city.members[: args.terminals]
    conns = []
    for m in members:
        account = stack.account(m.terminal_id)
        conn = DeviceConnection(mux, m.terminal_id, account.username, account.password)
        mux.add(conn)
        conns.append((m, conn, city.grid_by_code[m.grid_code].boundary.representative_point()))
    deadline = time.monotonic() + 60
    while mux.online < len(conns) and time.monotonic() < deadline:
        mux.poll(0.02, connects_per_poll=100)
    start = time.monotonic()
    sent, i = 0, 0
    while time.monotonic() - start < args.seconds:
        due = int((time.monotonic() - start) * args.rate)
        while sent < due:
            m, conn, p = conns[i % len(conns)]
            i += 1
            if conn.publish(*payloads.fix(m.terminal_id, datetime.now(timezone.utc), p.x + 1e-5 * (i % 7), p.y,
                                          5.0, 1.0, 90.0, 80)):
                sent += 1
        mux.poll(0.001)
    mux.close()
    return sent


if __name__ == "__main__":
    main()
