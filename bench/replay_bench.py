"""Track replay: a member's full day (17,280 fixes at 5 s) from the click on Load to the marker
moving, in headless Chromium against the real dashboard, beside a 2-hour track (1,440 fixes) in
the same run.

    .venv/bin/python -m bench.replay_bench [--runs 15]

Starts its own local stack (temp dir, free ports), loads the demo city, stores the two tracks for
one member (a walk inside their grid, at 5 s), starts the dashboard as its own process and signs
in. Each run: click Load, wait until the player is ready (the track arrived and its line stroked on
the map, the summary shown, Play enabled), choose 20× (not timed), click Play, wait until the
clock moves. Reported: p50 / p95 of load→ready, play→moving and their sum, twice: as the driver
sees them (Playwright's click and polling included) and in the page (from the click's event to
the frame after the change, bench/replay_marks.js); and the server's part alone (the track query,
stops, distance, coverage) timed in-process.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg2
from psycopg2.extras import execute_values

from bench.harness import BenchStack, percentile
from cases import store
from core.city import CITY_TZ
from dashboard.accounts import Accounts
from database import binary_copy
from kpis import tracks
from stack import free_port

PASSWORD = "bench-" + os.urandom(6).hex()


def _walk(grid, start: datetime, n: int) -> list[tuple]:
    rng = random.Random(1)
    p = grid.boundary.representative_point()
    x, y, heading, rows = p.x, p.y, 0.0, []
    from shapely.geometry import Point

    for i in range(n):
        heading += rng.gauss(0, 0.15)
        nx, ny = x + 6 / 111_320 * math.cos(heading), y + 6 / 111_320 * math.sin(heading)
        if not grid.boundary.contains(Point(nx, ny)):
            heading += math.pi
            nx, ny = x, y
        x, y = nx, ny
        rows.append((start + timedelta(seconds=5 * i), x, y))
    return rows


# In the page: the click's own event time, and the frame after the change is on screen (read it)
IN_PAGE = (Path(__file__).parent / "replay_marks.js").read_text()


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    from simulator.citygen import SCALES, generate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    city = generate(SCALES["demo"], seed=7)
    with BenchStack("replay", city=city) as bench:
        stack, dsn = bench.stack, bench.dsn
        conn = psycopg2.connect(dsn)
        with conn, conn.cursor() as cur:
            store.seed(cur, [date.today().year], "bench")
        member = city.members[0]
        grid = city.grid_by_code[member.grid_code]
        today = datetime.now(CITY_TZ).date()
        days = {"day": today - timedelta(days=2), "two hours": today - timedelta(days=1)}
        sizes = {"day": 17_280, "two hours": 1_440}
        with conn, conn.cursor() as cur:
            for name, day in days.items():
                start = datetime.combine(day, datetime.min.time(), CITY_TZ)
                execute_values(cur, "insert into positions (time, terminal_id, member_id, grid_code, lat, lon, "
                                    "source) values %s",
                               [(t, member.terminal_id, member.member_id, grid.code, lat, lon, "gcc")
                                for t, lon, lat in _walk(grid, start, sizes[name])], page_size=5000)
        accounts = Accounts(dsn, pool_size=1)
        accounts.add_user("bench", "bench", "admin", "", PASSWORD, created_by="bench")
        accounts.close()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        bench.app("dashboard", ["dashboard"], env={**stack.app_env("dashboard"), "GCC_DASHBOARD_PORT": str(port)},
                  ready_url=url + "/healthz")
        # the server's part alone
        server_ms = {}
        for name, day in days.items():
            start = datetime.combine(day, datetime.min.time(), CITY_TZ)
            took = []
            for _ in range(args.runs):
                t = time.perf_counter()
                with conn.cursor() as cur:
                    track = tracks.Track(*binary_copy.read(
                        cur, "select time, lat, lon from positions where terminal_id = %s and time >= %s "
                             "and time < %s order by time", (member.terminal_id, start, start + timedelta(days=1)),
                        ("timestamptz", "float8", "float8")))
                conn.commit()
                tracks.summary(track)
                tracks.coverage(track, grid.boundary)
                took.append((time.perf_counter() - t) * 1000)
            server_ms[name] = took
        results, in_page = {}, {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            page = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
            page.goto(url + "/login")
            page.fill("input[name=username]", "bench")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(lambda u: "/login" not in u)
            for run in range(args.runs):
                for name, day in days.items():        # interleaved: the machine's noise falls on both
                    page.goto(f"{url}/replay?member={member.terminal_id}&day={day.isoformat()}")
                    page.locator("#replay-load").wait_for()
                    page.wait_for_timeout(300)
                    page.evaluate(IN_PAGE, sizes[name])
                    t0 = time.perf_counter()
                    page.click("#replay-load")
                    page.wait_for_function("window.marks.ready", timeout=20000, polling=10)
                    t1 = time.perf_counter()
                    page.click("#replay-speed")              # 20×: the clock's second ticks at the first frame
                    page.click("[role=option]:has-text('20×')")
                    page.wait_for_timeout(100)
                    t_play = time.perf_counter()
                    page.click("#replay-play")
                    page.wait_for_function("window.marks.moving", timeout=10000, polling=10)
                    t2 = time.perf_counter()
                    marks = page.evaluate("window.marks")
                    if run:                           # the first of each warms the caches (the speed's choice left out)
                        results.setdefault(name, []).append(((t1 - t0) * 1000, (t2 - t_play) * 1000,
                                                             (t1 - t0 + t2 - t_play) * 1000))
                        in_page.setdefault(name, []).append((marks["ready"] - marks["load"],
                                                             marks["moving"] - marks["play"],
                                                             marks["ready"] - marks["load"] + marks["moving"]
                                                             - marks["play"]))
            browser.close()
        print(f"\n{platform.node()} · demo city · member {member.terminal_id} · {args.runs - 1} runs each, "
              "interleaved\n")
        for title, measured in (("seen by the driver (Playwright: its click and polling included)", results),
                                ("in the page (from the click's event to the frame after the change)", in_page)):
            print(f"{title}\n{'track':<11} {'fixes':>7} {'server p50':>11} {'ready p50':>10} {'ready p95':>10} "
                  f"{'moving p50':>11} {'total p50':>10} {'total p95':>10}")
            for name in days:
                ready, moving, total = zip(*measured[name], strict=True)
                print(f"{name:<11} {sizes[name]:>7,} {percentile(server_ms[name], 0.5):>9.0f}ms "
                      f"{percentile(ready, 0.5):>8.0f}ms {percentile(ready, 0.95):>8.0f}ms "
                      f"{percentile(moving, 0.5):>9.0f}ms {percentile(total, 0.5):>8.0f}ms "
                      f"{percentile(total, 0.95):>8.0f}ms")
            day_total = sorted(t for *_, t in measured["day"])
            two_total = sorted(t for *_, t in measured["two hours"])
            print(f"full day / two hours (total p50): {percentile(day_total, 0.5) / percentile(two_total, 0.5):.2f}×\n")
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
