"""The city's reference data in PostgreSQL: `python -m database.citydb load PATH` replaces it
with a city file in one transaction (COPY per table); `read_city(conn)` gives it back."""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import orjson
import psycopg2
from shapely.geometry import mapping, shape

from telemetry import city as model
from telemetry.catalogue import DeviceKind
from telemetry.orgcodes import Level, parent_of

_TABLES = ["members", "sensors", "gateways", "organizations", "units", "buildings", "grids",
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


def read_city(conn) -> model.City:
    """The city as stored, for processes that take reference data from the database."""
    with conn.cursor() as cur:
        cur.execute("select name, seed from city_info")
        row = cur.fetchone()
        if row is None:
            raise LookupError("no city is loaded; run `python -m database.citydb load PATH`")
        city = model.City(name=row[0], seed=row[1])
        cur.execute("select code, level, name, boundary from org_units order by code")
        for code, level, name, boundary in cur.fetchall():
            unit = model.OrgUnit(code, name, Level(level), shape(boundary))
            {"district": city.districts, "street": city.streets, "community": city.communities}[level].append(unit)
        cur.execute("select code, name, kind, households, population, boundary from grids order by code")
        city.grids = [model.Grid(c, n, model.GridKind(k), h, p, shape(b)) for c, n, k, h, p, b in cur.fetchall()]
        cur.execute("select building_id, grid_code, name, lon, lat, floors, households from buildings "
                    "order by building_id")
        city.buildings = [model.Building(*r) for r in cur.fetchall()]
        cur.execute("select unit_id, grid_code, name, kind, lon, lat from units order by unit_id")
        city.units = [model.Unit(*r) for r in cur.fetchall()]
        cur.execute("select org_id, grid_code, name, kind from organizations order by org_id")
        city.organizations = [model.Organization(*r) for r in cur.fetchall()]
        cur.execute("select gateway_id, kind, building_id, grid_code, protocol from gateways order by gateway_id")
        city.gateways = [model.Gateway(g, model.GatewayKind(k), b, c, p) for g, k, b, c, p in cur.fetchall()]
        cur.execute("select sensor_id, kind, building_id, gateway_id, grid_code, lon, lat from sensors "
                    "order by sensor_id")
        city.sensors = [model.Sensor(s, DeviceKind(k), b, g, c, x, y) for s, k, b, g, c, x, y in cur.fetchall()]
        cur.execute("select member_id, name, role, grid_code, terminal_id from members order by member_id")
        city.members = [model.Member(m, n, model.Role(r), g, t) for m, n, r, g, t in cur.fetchall()]
    return city


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
