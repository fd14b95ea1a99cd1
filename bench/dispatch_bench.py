"""The nearest available member for a case, among 50,000 members of whom 10 % are available,
measured side by side with a naive SQL scan.

    .venv/bin/python -m bench.dispatch_bench [--members 50000] [--available 0.1] [--queries 2000]

Starts its own local stack (temp dir, free ports). A synthetic big city: `--members` members spread
over a 24 × 24 km square around Fuzhou's centre, each in a synthetic grid of about 500 × 500 m;
`--available` of them online with a fresh fix, the others offline, silent (a fix 10 minutes old)
or on a case. Their live state is written as the ingest writes it (ingest.live.LiveState: the
positions in a Redis GEO set, a hash per terminal).

  candidates  `dispatch.candidates.find` from a random point: GEOSEARCH BYRADIUS 3 km ASC (the
              200 nearest), their live state in one pipeline, filtered and ranked, as the console
              and the engine call it.
  naive       the same question of PostgreSQL over a table of the members' latest positions and
              states (no spatial index: what one writes first): every available member's distance
              computed, the 10 nearest kept.
The two alternate query by query from the same points, so the machine's noise falls on both.
"""
from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from datetime import datetime, timedelta, timezone

import psycopg2
from psycopg2.extras import execute_values

from bench.harness import BenchStack, percentile
from core.catalogue import CaseState
from core.city import City, Member
from core.roles import Role
from dispatch.candidates import Settings, find
from ingest.live import LiveState
from ingest.model import Enriched
from stack import LocalStack
from telemetry.messages import Fix, TerminalStatus

CENTRE = (26.08, 119.30)
HALF_SIDE_M = 12_000
GRID_M = 500
ROLES = (Role.GRID_ADMINISTRATOR, Role.GRID_COORDINATOR, Role.GRID_POLICE_OFFICER)


def _grid_code(x_m: float, y_m: float) -> str:
    gx, gy = int((x_m + HALF_SIDE_M) // GRID_M), int((y_m + HALF_SIDE_M) // GRID_M)
    return f"350102{gx + 1:03d}{gy + 1:03d}001"[:15]     # numbers from 001: 000 is no valid code


def _city(n: int, rng: random.Random) -> tuple[City, list[tuple[Member, float, float]]]:
    placed, members = [], []
    lat0, lon0 = CENTRE
    for i in range(n):
        x, y = rng.uniform(-HALF_SIDE_M, HALF_SIDE_M), rng.uniform(-HALF_SIDE_M, HALF_SIDE_M)
        member = Member(f"BM{i}", f"Member {i}", ROLES[i % 3], _grid_code(x, y), f"BT{i}")
        members.append(member)
        placed.append((member, lat0 + y / 111_320, lon0 + x / (111_320 * 0.898)))
    return City("bench city", 0, members=members), placed


def _fill(local: LocalStack, placed, available: float, rng: random.Random) -> dict[str, list[str]]:
    """The live state as the ingest writes it, and the naive table; returns the members' open work."""
    r = local.settings().redis_client()
    writer = LiveState(r)
    writer.ensure_schema()
    now = datetime.now(timezone.utc)
    work: dict[str, list[str]] = {}
    rows, items, statuses = [], [], []
    for member, lat, lon in placed:
        kind = "available" if rng.random() < available else rng.choice(("offline", "silent", "busy"))
        t = now - timedelta(minutes=10) if kind == "silent" else now
        items.append(Enriched(Fix(terminal_id=member.terminal_id, time=t, lat=lat, lon=lon, source="gcc"),
                              member.grid_code, member_id=member.member_id, home_grid_code=member.grid_code,
                              received_at=t))
        if kind == "offline":
            statuses.append(Enriched(TerminalStatus(terminal_id=member.terminal_id, time=now, state="offline",
                                                    source="gcc"), member.grid_code, member_id=member.member_id,
                                     received_at=now))
        if kind == "busy":
            work[member.terminal_id] = [CaseState.ACCEPTED.value]
        rows.append((member.terminal_id, lat, lon, t, "offline" if kind == "offline" else "online",
                     kind == "busy", member.role.value, member.grid_code))
    for i in range(0, len(items), 2000):
        writer.apply(items[i:i + 2000])
    for i in range(0, len(statuses), 2000):
        writer.apply(statuses[i:i + 2000])
    r.close()
    conn = psycopg2.connect(local.settings().pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("create table bench_latest (terminal_id text primary key, lat float8, lon float8, "
                        "t timestamptz, state text, busy boolean, role text, grid_code text)")
            execute_values(cur, "insert into bench_latest values %s", rows, page_size=5000)
            cur.execute("analyze bench_latest")
    finally:
        conn.close()
    return work


NAIVE = ("select terminal_id, sqrt(((lat - %(lat)s) * 111320) ^ 2 + ((lon - %(lon)s) * 111320 * "
         "cos(radians(%(lat)s))) ^ 2) as d from bench_latest where state = 'online' and not busy and "
         "t > now() - interval '2 minutes' and role <> %(supervisor)s order by d limit 10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--available", type=float, default=0.1)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(20261202)
    with BenchStack("dispatch") as bench:
        local = bench.stack
        city, placed = _city(args.members, rng)
        t0 = time.perf_counter()
        work = _fill(local, placed, args.available, rng)
        print(f"# dispatch_bench on {platform.node()} ({platform.processor() or platform.machine()}), "
              f"{args.members:,} members, {args.available:.0%} available; live state written in "
              f"{time.perf_counter() - t0:.1f} s")
        r = local.settings().redis_client()
        conn = psycopg2.connect(local.settings().pg_dsn)
        settings = Settings()
        fast, slow, found = [], [], []
        lat0, lon0 = CENTRE
        for _ in range(args.queries):
            x, y = (rng.uniform(-HALF_SIDE_M * 0.9, HALF_SIDE_M * 0.9) for _ in range(2))
            lat, lon = lat0 + y / 111_320, lon0 + x / (111_320 * 0.898)
            t = time.perf_counter()
            search = find(r, city, "exposed_garbage", _grid_code(x, y), lat, lon, lambda tid: work.get(tid, []),
                          time.time(), settings)
            fast.append(time.perf_counter() - t)
            found.append(sum(1 for c in search.candidates if c.available))
            t = time.perf_counter()
            with conn.cursor() as cur:
                cur.execute(NAIVE, {"lat": lat, "lon": lon, "supervisor": Role.GRID_SUPERVISOR.value})
                cur.fetchall()
            slow.append(time.perf_counter() - t)
        conn.close()
        r.close()
        for name, took in (("candidates", fast), ("naive", slow)):
            print(f"{name:<11} p50 {statistics.median(took) * 1000:7.2f} ms  "
                  f"p99 {percentile(took, .99) * 1000:7.2f} ms  max {max(took) * 1000:7.2f} ms  ({len(took)} queries)")
        print(f"available candidates per query: median {statistics.median(found):.0f} "
              f"(of the {settings.look_at} nearest terminals looked at within {settings.radius_m:.0f} m)")
        print(f"ratio naive / candidates at p99: {percentile(slow, .99) / percentile(fast, .99):.1f}×")


if __name__ == "__main__":
    main()
