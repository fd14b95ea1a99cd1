"""How long a registry change takes to reach a running process, demo city and big city side by
side in one run: `python -m bench.registry_bench [--changes 10]`.

Each process that holds the city (every ingest worker, the dashboard, the cases engine) reads all
of it again from PostgreSQL on the registry's notification (database.citydb.CityWatch) and the
ingest rebuilds its look-ups (ingest.stages.Registry.updated; the grid index only when boundaries
changed). Measured on a real PostgreSQL+TimescaleDB started in a temp dir, per city:

- read: `read_city` alone (median of `--reads`),
- apply: the ingest's registry rebuilt from it (no boundary change; and with one),
- change → seen: a sensor added through the registry (`DeviceRegistry.add_sensor`, its commit
  and NOTIFY) until a running CityWatch's listener has the new city (median of `--changes`).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import threading
import time
import uuid

import psycopg2

from bench.harness import BenchStack
from database.citydb import CityWatch, load_city, read_city
from ingest.stages import Registry
from registry.store import Actor, DeviceRegistry
from simulator.citygen import SCALES, generate


def _measure(dsn: str, scale: str, reads: int, changes: int) -> dict:
    city = generate(SCALES[scale])
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("truncate city_info, org_units, grids, buildings, units, organizations, gateways, sensors, "
                        "members, member_devices cascade")
        conn.commit()
        load_city(conn, city)
        read, apply_same, apply_grids = [], [], []
        base = None
        for _ in range(reads):
            start = time.perf_counter()
            fresh = read_city(conn)
            read.append(time.perf_counter() - start)
            start = time.perf_counter()
            rebuilt = Registry(fresh, base.grids if base else None) if base else Registry(fresh)
            (apply_same if base else apply_grids).append(time.perf_counter() - start)
            if base is not None:                # and with a boundary change: the grid index too
                start = time.perf_counter()
                Registry(read_city(conn))
                apply_grids.append(time.perf_counter() - start - read[-1])
            base = rebuilt
    finally:
        conn.close()
    read, apply_same, apply_grids = (statistics.median(x) for x in (read, apply_same, apply_grids))

    seen = threading.Event()
    watch = CityWatch(dsn, read_city_once(dsn), [lambda _city, _tables: seen.set()]).start()
    registry = DeviceRegistry(dsn, None)       # a sensor needs no broker account
    gateway = city.gateways[0].gateway_id
    latencies = []
    try:
        time.sleep(0.5)                         # the watch is listening
        for _ in range(changes):
            seen.clear()
            start = time.perf_counter()
            registry.add_sensor(Actor("bench"), f"urn:dev:bench:{uuid.uuid4().hex[:12]}", "gas_detector", gateway)
            if not seen.wait(60):
                raise TimeoutError("the watch never saw the change")
            latencies.append(time.perf_counter() - start)
    finally:
        watch.stop()
    return {"scale": scale, "grids": len(city.grids), "members": len(city.members), "buildings": len(city.buildings),
            "sensors": len(city.sensors), "read": read, "apply": apply_same, "apply_grids": apply_grids,
            "change_seen": statistics.median(latencies), "change_seen_max": max(latencies)}


def read_city_once(dsn: str):
    conn = psycopg2.connect(dsn)
    try:
        return read_city(conn)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    with BenchStack("registry", postgres_only=True) as bench:   # the database and its listeners alone
        results = [_measure(bench.dsn, scale, args.reads, args.changes) for scale in ("demo", "big")]
    print(f"registry change → running process, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")
    print(f"{'city':6} {'grids':>6} {'members':>8} {'buildings':>9} {'sensors':>8} {'read s':>8} {'apply s':>8} "
          f"{'+grids s':>8} {'change→seen s':>14} {'max s':>6}")
    for r in results:
        print(f"{r['scale']:6} {r['grids']:6,} {r['members']:8,} {r['buildings']:9,} {r['sensors']:8,} "
              f"{r['read']:8.2f} {r['apply']:8.3f} {r['apply_grids']:8.2f} {r['change_seen']:14.2f} "
              f"{r['change_seen_max']:6.2f}")
    demo, big = results
    print(f"big / demo: read ×{big['read'] / demo['read']:.1f}, "
          f"change→seen ×{big['change_seen'] / demo['change_seen']:.1f} for ×{big['sensors'] / demo['sensors']:.1f} "
          "the sensors")


if __name__ == "__main__":
    main()
