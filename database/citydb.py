"""The city's reference data in PostgreSQL: `python -m database.citydb load PATH` replaces it
with a city file in one transaction (COPY per table); `read_city(conn)` gives it back, and
`CityWatch` keeps a running process's copy current as the registry changes it (LISTEN registry:
the reference tables' triggers notify on every committed change, migration 0024)."""
from __future__ import annotations

import argparse
import csv
import io
import logging
import select
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import psycopg2
from shapely.geometry import mapping, shape

from core import city as model
from core import freetext
from core.catalogue import DeviceKind
from core.orgcodes import Level, parent_of

log = logging.getLogger(__name__)
REGISTRY_CHANNEL = "registry"            # notified by the reference tables' triggers (payload: the table)
_TABLES = ["ledger_changes", "ledger_submissions", "resident_tags", "residents", "households", "houses",  # the
           "things",                                                  # ledger of this city's buildings and grids
           "handheld_sessions", "handheld_credentials", "handheld_enrolments",   # a handheld's, with its device
           "member_devices", "members", "sensors", "gateways", "organizations", "units", "buildings", "grids",
           "org_units", "city_info"]


def _copy(cur, table: str, columns: list[str], rows) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in rows:
        writer.writerow(["\\N" if v is None else v for v in row])
    buf.seek(0)
    cur.copy_expert(f"copy {table} ({', '.join(columns)}) from stdin with (format csv, null '\\N')", buf)


def _geojson(geom) -> str:
    return orjson.dumps(mapping(geom)).decode()


def load_city(conn, city: model.City) -> None:
    """Replace all reference data with this city's, atomically."""
    with conn, conn.cursor() as cur:
        cur.execute(f"truncate {', '.join(_TABLES)}")
        cur.execute("insert into city_info (name, seed) values (%s, %s)", (city.name, city.seed))
        orgs = [*city.districts, *city.streets, *city.communities]
        _copy(cur, "org_units", ["code", "level", "parent_code", "name", "boundary"],
              ((o.code, o.level.value, parent_of(o.code), o.name, _geojson(o.boundary)) for o in orgs))
        _copy(cur, "grids", ["code", "community_code", "name", "kind", "households", "population",
                             "boundary", "min_lon", "min_lat", "max_lon", "max_lat"],
              ((g.code, g.community_code, g.name, g.kind.value, g.households, g.population,
                _geojson(g.boundary), *g.boundary.bounds) for g in city.grids))
        _copy(cur, "buildings", ["building_id", "grid_code", "name", "lon", "lat", "floors", "households"],
              ((b.building_id, b.grid_code, b.name, b.lon, b.lat, b.floors, b.households)
               for b in city.buildings))
        _copy(cur, "units", ["unit_id", "grid_code", "name", "kind", "lon", "lat"],
              ((u.unit_id, u.grid_code, u.name, u.kind, u.lon, u.lat) for u in city.units))
        _copy(cur, "organizations", ["org_id", "grid_code", "name", "kind"],
              ((o.org_id, o.grid_code, o.name, o.kind) for o in city.organizations))
        _copy(cur, "gateways", ["gateway_id", "kind", "building_id", "grid_code", "protocol"],
              ((g.gateway_id, g.kind.value, g.building_id, g.grid_code, g.protocol) for g in city.gateways))
        _copy(cur, "sensors", ["sensor_id", "kind", "building_id", "gateway_id", "grid_code", "lon", "lat"],
              ((s.sensor_id, s.kind.value, s.building_id, s.gateway_id, s.grid_code, s.lon, s.lat)
               for s in city.sensors))
        _copy(cur, "members", ["member_id", "name", "role", "grid_code", "terminal_id"],
              ((m.member_id, m.name, m.role.value, m.grid_code, m.terminal_id) for m in city.members))
        _copy(cur, "member_devices", ["device_id", "member_id", "kind", "label"],
              [*((m.terminal_id, m.member_id, "terminal", "") for m in city.members),
               *((d.device_id, d.member_id, d.kind.value, d.label) for d in city.devices)])


def read_city(conn) -> model.City:
    """The city as stored, for processes that take reference data from the database; its names
    at most a name's length (core.freetext: one stored before the limit is cut with "…")."""
    with conn.cursor() as cur:
        cur.execute("select name, seed from city_info")
        row = cur.fetchone()
        if row is None:
            raise LookupError("no city is loaded; run `python -m database.citydb load PATH`")
        city = model.City(name=_name(row[0]), seed=row[1])
        cur.execute("select code, level, name, boundary from org_units order by code")
        for code, level, name, boundary in cur.fetchall():
            unit = model.OrgUnit(code, _name(name), Level(level), shape(boundary))
            {"district": city.districts, "street": city.streets, "community": city.communities}[level].append(unit)
        cur.execute("select code, name, kind, households, population, boundary from grids order by code")
        city.grids = [model.Grid(c, _name(n), model.GridKind(k), h, p, shape(b)) for c, n, k, h, p, b in cur.fetchall()]
        cur.execute("select building_id, grid_code, name, lon, lat, floors, households from buildings "
                    "order by building_id")
        city.buildings = [model.Building(b, g, _name(n), *rest) for b, g, n, *rest in cur.fetchall()]
        cur.execute("select unit_id, grid_code, name, kind, lon, lat from units order by unit_id")
        city.units = [model.Unit(u, g, _name(n), *rest) for u, g, n, *rest in cur.fetchall()]
        cur.execute("select org_id, grid_code, name, kind from organizations order by org_id")
        city.organizations = [model.Organization(o, g, _name(n), k) for o, g, n, k in cur.fetchall()]
        cur.execute("select gateway_id, kind, building_id, grid_code, protocol from gateways "
                    "where retired_at is null order by gateway_id")
        city.gateways = [model.Gateway(g, model.GatewayKind(k), b, c, p) for g, k, b, c, p in cur.fetchall()]
        cur.execute("select sensor_id, kind, building_id, gateway_id, grid_code, lon, lat from sensors "
                    "where retired_at is null order by sensor_id")
        city.sensors = [model.Sensor(s, DeviceKind(k), b, g, c, x, y) for s, k, b, g, c, x, y in cur.fetchall()]
        cur.execute("select member_id, name, role, grid_code, terminal_id from members where retired_at is null "
                    "order by member_id")
        city.members = [model.Member(m, _name(n), model.Role(r), g, t) for m, n, r, g, t in cur.fetchall()]
        cur.execute("select d.device_id, d.member_id, d.kind, d.label from member_devices d "
                    "join members m using (member_id) where d.retired_at is null and m.retired_at is null "
                    "and d.device_id <> m.terminal_id order by d.device_id")
        city.devices = [model.MemberDevice(i, m, model.MemberDeviceKind(k), _name(label))
                        for i, m, k, label in cur.fetchall()]
        city.retired = _retired(cur)
    return city


def _name(value: str) -> str:
    return freetext.shown(value, freetext.NAME)


def device_accounts(conn) -> tuple[dict[str, str], set[str]]:
    """What the broker's device accounts follow: (every active terminal -> its member's grid, the
    ids of retired terminals, phones and gateways), two queries rather than the whole city."""
    with conn.cursor() as cur:
        cur.execute("select d.device_id, m.grid_code from member_devices d join members m using (member_id) "
                    "where d.kind = 'terminal' and d.retired_at is null and m.retired_at is null")
        grids = dict(cur.fetchall())
        cur.execute("select d.device_id from member_devices d join members m using (member_id) "
                    "where d.retired_at is not null or m.retired_at is not null "
                    "union select gateway_id from gateways where retired_at is not null")
        return grids, {d for (d,) in cur.fetchall()}


def _retired(cur) -> dict[str, str]:
    """Retired ids -> what they were, for the ingest's `retired_device` refusals."""
    cur.execute("""
        select d.device_id, format('%s of member %s, retired %s', d.kind, d.member_id,
                                   to_char(coalesce(d.retired_at, m.retired_at), 'YYYY-MM-DD HH24:MI TZ'))
          from member_devices d join members m using (member_id)
         where d.retired_at is not null or m.retired_at is not null
        union all
        select sensor_id, format('sensor, retired %s', to_char(retired_at, 'YYYY-MM-DD HH24:MI TZ'))
          from sensors where retired_at is not null
        union all
        select gateway_id, format('gateway, retired %s', to_char(retired_at, 'YYYY-MM-DD HH24:MI TZ'))
          from gateways where retired_at is not null""")
    return dict(cur.fetchall())


class CityWatch:
    """Keeps `city` current in a running process: LISTEN on the registry channel, and on a
    notification (changes arriving together are taken together, `settle_s`) read the city again
    and `City.adopt` it, then tell each listener `(city, tables)`: the tables that changed, or
    None when unknown (after a reconnect, which reads again in case a change was missed).

    A full read takes 0.08 s for the demo city and 2.0 s for the big city (205,000 sensors;
    bench/registry_bench.py). Simpler than applying row changes one by one. A failing
    read or listener is logged and retried on the next notification; the old city stays in use."""

    def __init__(self, dsn: str, city: model.City, listeners: list[Callable] | None = None,
                 settle_s: float = 0.2, reconnect_s: float = 2.0) -> None:
        self.dsn, self.city, self.listeners = dsn, city, list(listeners or [])
        self.settle_s, self.reconnect_s = settle_s, reconnect_s
        self.seen = -1                   # the registry's version (its sequence) the city was read at
        self.listening = threading.Event()
        self._reading = threading.RLock()    # a read of the city and its listeners, one at a time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="city-watch", daemon=True)

    def start(self) -> CityWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                conn = psycopg2.connect(self.dsn)
                conn.autocommit = True
                try:
                    with conn.cursor() as cur:
                        cur.execute(f"listen {REGISTRY_CHANNEL}")
                    self.listening.set()
                    if first and self.seen < 0:
                        self.seen = _registry_version(conn)   # the city handed in was read about now
                    elif not first:
                        self._reload(conn, None)
                    first = False
                    self._listen(conn)
                finally:
                    self.listening.clear()
                    conn.close()
            except psycopg2.Error as exc:
                log.warning("registry watch: %s; listening again in %.0f s", str(exc).strip(), self.reconnect_s)
            self._stop.wait(self.reconnect_s)

    def _listen(self, conn) -> None:
        while not self._stop.is_set():
            if not select.select([conn], [], [], 1.0)[0]:
                continue
            conn.poll()
            if not conn.notifies:
                continue
            time.sleep(self.settle_s)
            conn.poll()
            tables = {n.payload for n in conn.notifies}
            conn.notifies.clear()
            self._reload(conn, frozenset(tables))

    def catch_up(self) -> None:
        """Read the city now if the registry moved on since it was read (a change whose
        notification has not arrived yet), or wait for a read under way: when this returns, every
        listener has what the registry held when it was called. One small query (the sequence's
        row); the ingest asks once per batch that has an unknown device, so a flood of unknown
        devices costs a query per batch, not per message."""
        try:
            conn = psycopg2.connect(self.dsn)
            try:
                conn.autocommit = True
                with self._reading:
                    if _registry_version(conn) > self.seen:
                        self._reload(conn, None)
            finally:
                conn.close()
        except psycopg2.Error as exc:
            log.warning("registry watch: could not ask for the registry's version: %s", exc)

    def _reload(self, conn, tables: frozenset[str] | None) -> None:
        """Read the city, adopt it and tell the listeners, all under the lock: whoever waits for it
        (catch_up) finds every holder updated when it gets it."""
        started = time.monotonic()
        with self._reading:
            try:
                seen = _registry_version(conn)   # before the read: a change meanwhile is read again later
                fresh = read_city(conn)
            except (psycopg2.Error, LookupError) as exc:
                log.warning("registry watch: could not read the city again: %s", exc)
                return
            self.city.adopt(fresh)
            self.seen = seen
            for listener in self.listeners:
                try:
                    listener(self.city, tables)
                except Exception:
                    log.exception("registry watch: a listener failed")
        log.info("registry: %s changed; city read again in %.2f s", ", ".join(sorted(tables or ["(unknown)"])),
                 time.monotonic() - started)

def _registry_version(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("select version from registry_state")
        return cur.fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    from config.settings import settings

    parser = argparse.ArgumentParser(prog="python -m database.citydb", description=__doc__)
    parser.add_argument("command", choices=("load",))
    parser.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    city = model.City.load(args.path)
    conn = psycopg2.connect(settings().pg_dsn)
    try:
        load_city(conn, city)
    finally:
        conn.close()
    print(f"loaded {args.path}: {len(city.grids)} grids, {len(city.members)} members, "
          f"{len(city.sensors)} sensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
