"""Org units' boundaries from GeoJSON, one parent at a time: a community's grids, a street's
communities, or a district's streets. The units must tile their parent, so the import is refused,
naming the offending units, when one overlaps another, reaches outside the parent, or leaves a gap
inside it; and a unit that already has units of its own (a community's grids) must still be tiled
by them within its new boundary, else the import is refused naming those grids. Accepted: every
unit of the file is added or given its new boundary (and name; a grid also its kind, households,
population) in one transaction, audited; the ingest workers rebuild their grid index and every
screen its org tree on the notification (database.citydb.CityWatch). Nothing is deleted: every
unit the parent has must be in the file.

The file: a FeatureCollection of Polygon/MultiPolygon features whose properties carry `code` (a
9-digit street, 12-digit community or 15-digit grid code: its parent's code and three digits),
`name`, and for grids optionally `kind` (residential | unit), `households`, `population`. Areas
are measured in square metres on a local equirectangular projection (good to a fraction of a
percent over a street); what is smaller than TOLERANCE_M2 is shared-edge rounding, not an overlap
or a gap. `export_boundaries` writes the same file from the database (download, edit, import).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import orjson
import psycopg2
from shapely import STRtree
from shapely.geometry import mapping, shape
from shapely.ops import unary_union
from shapely.validation import explain_validity

from core import freetext
from core.catalogue import AuditAction
from core.city import GridKind
from core.orgcodes import InvalidCode, Level, level_of, parent_of
from database.audit import write_audit
from registry.store import Actor, RegistryError

TOLERANCE_M2 = 1.0
_EARTH_M_PER_DEG = 111_320.0
_IMPORTED = {9: Level.STREET, 12: Level.COMMUNITY, 15: Level.GRID}
_PLURAL = {Level.STREET: "streets", Level.COMMUNITY: "communities", Level.GRID: "grids"}


def _m2(geom, lat0: float) -> float:
    """Area in m² of a lon/lat geometry near latitude lat0."""
    return geom.area * _EARTH_M_PER_DEG ** 2 * math.cos(math.radians(lat0))


def _count(props: dict, key: str, where: str) -> int | None:
    value = props.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
        raise RegistryError(f"{where}: {key} {value!r}: a whole number, 0 or more")
    return int(value)


def units_of(document: dict) -> tuple[Level, list[dict]]:
    """The file's units, checked one by one, and their level; RegistryError naming the feature."""
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection" \
            or not isinstance(document.get("features"), list):
        raise RegistryError("expected a GeoJSON FeatureCollection of grid (or community, street) features")
    units = []
    for index, feature in enumerate(document["features"]):
        props = feature.get("properties") if isinstance(feature, dict) else None
        props = props if isinstance(props, dict) else {}
        code = str(props.get("code", ""))
        level = _IMPORTED.get(len(code)) if code.isdigit() else None
        where = f"feature {index}" + (f" ({level.value if level else 'unit'} {code})" if code else "")
        if level is None:
            raise RegistryError(f"{where}: properties.code must be a 15-digit grid code (or a 12-digit community, "
                                "9-digit street code)")
        try:
            level_of(code)
        except InvalidCode as exc:
            raise RegistryError(f"{where}: {exc}") from None
        try:
            geom = shape(feature["geometry"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistryError(f"{where}: geometry is not GeoJSON: {exc}") from None
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise RegistryError(f"{where}: geometry is a {geom.geom_type}, not a Polygon or MultiPolygon")
        if not geom.is_valid:
            raise RegistryError(f"{where}: geometry is not valid: {explain_validity(geom)}")
        if geom.is_empty or _m2(geom, geom.centroid.y) <= TOLERANCE_M2:
            raise RegistryError(f"{where}: geometry is empty (an area of at most {TOLERANCE_M2:g} m²)")
        wrong = freetext.problem(str(props.get("name") or code).strip(), freetext.NAME)
        if wrong:
            raise RegistryError(f"{where}: properties.name {wrong}")
        unit = {"code": code, "level": level, "name": str(props.get("name") or code).strip(), "geom": geom}
        if level is Level.GRID:      # what the file leaves out keeps its stored value (a new grid: the default)
            kind = props.get("kind")
            if kind is not None and kind not in {k.value for k in GridKind}:
                raise RegistryError(f"{where}: kind {kind!r}: residential or unit")
            unit.update(kind=kind, households=_count(props, "households", where),
                        population=_count(props, "population", where))
        units.append(unit)
    if not units:
        raise RegistryError("the file has no features")
    levels = {u["level"] for u in units}
    if len(levels) != 1:
        raise RegistryError(f"the file mixes {' and '.join(sorted(_PLURAL[v] for v in levels))}: "
                            "import one level of one parent at a time")
    codes = [u["code"] for u in units]
    if len(set(codes)) != len(codes):
        raise RegistryError(f"{units[0]['level'].value} {sorted(c for c in codes if codes.count(c) > 1)[0]} "
                            "appears twice")
    parents = {parent_of(c) for c in codes}
    if len(parents) != 1:
        raise RegistryError(f"the {_PLURAL[units[0]['level']]} belong to {len(parents)} parents "
                            f"({', '.join(sorted(parents))}): import one {units[0]['level'].parent.value} at a time")
    return units[0]["level"], units


def tiling_problems(units: list[dict], parent, lat0: float, level: Level = Level.GRID,
                    parent_name: str | None = None) -> list[str]:
    """What keeps these units from tiling `parent` (its boundary): overlaps, parts outside, gaps."""
    word, outer = level.value, parent_name or (level.parent.value if level.parent else "parent")
    problems = []
    geoms = [u["geom"] for u in units]
    tree = STRtree(geoms)
    for i, j in zip(*tree.query(geoms, predicate="intersects"), strict=True):
        if i < j:
            area = _m2(geoms[i].intersection(geoms[j]), lat0)
            if area > TOLERANCE_M2:
                problems.append(f"{_PLURAL[level]} {units[i]['code']} and {units[j]['code']} overlap by {area:,.0f} m²")
    for unit in units:
        outside = _m2(unit["geom"].difference(parent), lat0)
        if outside > TOLERANCE_M2:
            problems.append(f"{word} {unit['code']} reaches {outside:,.0f} m² outside its {outer}")
    gap = parent.difference(unary_union(geoms))
    parts = [p for p in getattr(gap, "geoms", [gap]) if not p.is_empty and _m2(p, lat0) > TOLERANCE_M2]
    for part in parts:
        point = part.representative_point()
        near = min(units, key=lambda u: u["geom"].distance(point))["code"]
        problems.append(f"a gap of {_m2(part, lat0):,.0f} m² inside the {outer}, near {word} {near} "
                        f"(at {point.x:.6f}, {point.y:.6f})")
    return problems


def _children(cur, level: Level, parent_code: str) -> list[dict]:
    """The units of `level` the database holds under `parent_code`, with their boundaries."""
    if level is Level.GRID:
        cur.execute("select code, boundary from grids where community_code = %s order by code", (parent_code,))
    else:
        cur.execute("select code, boundary from org_units where parent_code = %s and level = %s order by code",
                    (parent_code, level.value))
    return [{"code": code.strip(), "geom": shape(boundary)} for code, boundary in cur.fetchall()]


def _problems(cur, level: Level, units: list[dict], parent_code: str, parent) -> list[str]:
    existing = {u["code"] for u in _children(cur, level, parent_code)}
    problems = [f"{level.value} {code} of the {level.parent.value} is not in the file (it holds every "
                f"{level.value} of the {level.parent.value})" for code in sorted(existing - {u["code"] for u in units})]
    problems += tiling_problems(units, parent, parent.centroid.y, level)
    if level.child is not None:       # a changed unit must still be tiled by its own units
        for unit in units:
            inside = _children(cur, level.child, unit["code"])
            if inside:
                problems += [f"in {level.value} {unit['code']}: {p}" for p in tiling_problems(
                    inside, unit["geom"], unit["geom"].centroid.y, level.child, f"new boundary of {unit['code']}")]
    return problems


def _store(cur, level: Level, parent_code: str, unit: dict) -> None:
    boundary = orjson.dumps(mapping(unit["geom"])).decode()
    if level is not Level.GRID:
        cur.execute("insert into org_units (code, level, parent_code, name, boundary) values (%s, %s, %s, %s, %s) "
                    "on conflict (code) do update set name = excluded.name, boundary = excluded.boundary",
                    (unit["code"], level.value, parent_code, unit["name"], boundary))
        return
    cur.execute("""
        insert into grids (code, community_code, name, kind, households, population, boundary,
                           min_lon, min_lat, max_lon, max_lat)
        values (%(code)s, %(parent)s, %(name)s, coalesce(%(kind)s, 'residential'), coalesce(%(households)s, 0),
                coalesce(%(population)s, 0), %(boundary)s, %(min_lon)s, %(min_lat)s, %(max_lon)s, %(max_lat)s)
        on conflict (code) do update set name = excluded.name, kind = coalesce(%(kind)s, grids.kind),
            households = coalesce(%(households)s, grids.households),
            population = coalesce(%(population)s, grids.population),
            boundary = excluded.boundary, min_lon = excluded.min_lon, min_lat = excluded.min_lat,
            max_lon = excluded.max_lon, max_lat = excluded.max_lat""",
                dict(zip(("min_lon", "min_lat", "max_lon", "max_lat"), unit["geom"].bounds, strict=True),
                     code=unit["code"], parent=parent_code, name=unit["name"], kind=unit["kind"],
                     households=unit["households"], population=unit["population"], boundary=boundary))


def import_boundaries(dsn: str, actor: Actor, data: bytes,
                      may_import: Callable[[Level, str], str | None] | None = None) -> tuple[str, str]:
    """Check and store one parent's units' boundaries: (a summary, the parent's code), or
    RegistryError naming the units. `may_import(level of the units, parent code)` says why the
    caller may not (a page's admin outside that parent), once the file's parent is known."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"not JSON: {exc}") from None
    level, units = units_of(document)
    parent_code, parent_level = parent_of(units[0]["code"]), level.parent
    why = may_import(level, parent_code) if may_import is not None else None
    if why:
        raise RegistryError(why)
    target = f"{parent_level.value}:{parent_code}"
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            # one import at a time: a community's and its grids' imports each check what the other changes
            cur.execute("select pg_advisory_xact_lock(hashtext('registry.boundaries'))")
            cur.execute("select boundary from org_units where code = %s and level = %s",
                        (parent_code, parent_level.value))
            row = cur.fetchone()
            if row is None:
                raise RegistryError(f"no {parent_level.value} {parent_code} (the first {len(parent_code)} digits of "
                                    f"the {level.value} codes)")
            existing = {u["code"] for u in _children(cur, level, parent_code)}
            problems = _problems(cur, level, units, parent_code, shape(row[0]))
            if problems:
                reason = "; ".join(problems)
                write_audit(cur, actor.user, list(actor.roles), AuditAction.REGISTRY_BOUNDARIES_IMPORT, target,
                            parent_code, "refused", reason[:2000], source_address=actor.source_address)
                conn.commit()
                raise RegistryError(f"refused, the {_PLURAL[level]} do not tile {parent_level.value} {parent_code}: "
                                    f"{reason}")
            for unit in units:
                _store(cur, level, parent_code, unit)
            added = sorted({u["code"] for u in units} - existing)
            write_audit(cur, actor.user, list(actor.roles), AuditAction.REGISTRY_BOUNDARIES_IMPORT, target, parent_code,
                        "done", None, None, {_PLURAL[level]: len(units), "added": added}, actor.source_address)
    finally:
        conn.close()
    return f"{parent_level.value} {parent_code}: {len(units)} {level.value} boundaries stored ({len(added)} new)", \
        parent_code


def export_boundaries(dsn: str, parent_code: str) -> dict:
    """The units under `parent_code` (a community's grids, a street's communities, a district's
    streets) as `import_boundaries` takes them, with the parent itself in the collection's
    `parent` member (foreign members are allowed by RFC 7946 §6.1; the import ignores it)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select name, level, boundary from org_units where code = %s", (parent_code,))
            row = cur.fetchone()
            if row is None:
                raise RegistryError(f"no district, street or community {parent_code}")
            level = Level(row[1]).child
            if level is Level.GRID:
                cur.execute("select code, name, kind, households, population, boundary from grids "
                            "where community_code = %s order by code", (parent_code,))
                features = [{"type": "Feature", "geometry": boundary,
                             "properties": {"code": code.strip(), "name": name, "kind": kind,
                                            "households": households, "population": population}}
                            for code, name, kind, households, population, boundary in cur.fetchall()]
            else:
                cur.execute("select code, name, boundary from org_units where parent_code = %s and level = %s "
                            "order by code", (parent_code, level.value))
                features = [{"type": "Feature", "geometry": boundary, "properties": {"code": code, "name": name}}
                            for code, name, boundary in cur.fetchall()]
    finally:
        conn.close()
    return {"type": "FeatureCollection", "features": features,
            "parent": {"code": parent_code, "level": row[1], "name": row[0], "boundary": row[2]}}
