"""Grid boundaries from GeoJSON, for one community at a time: the grids must tile the community, so
the import is refused, naming the offending grids, when a grid overlaps another, reaches outside
the community, or leaves a gap inside it. Accepted: every grid of the file is added or given its
new boundary (and name, kind, households, population) in one transaction, audited; the ingest
workers rebuild their grid index on the notification (database.citydb.CityWatch).

The file: a FeatureCollection of Polygon/MultiPolygon features whose properties carry `code` (the
15-digit grid code; its first 12 digits are the community's), `name`, and optionally `kind`
(residential | unit), `households`, `population`. Areas are measured in square metres on a local
equirectangular projection (good to a fraction of a percent over a community); what is smaller
than TOLERANCE_M2 is shared-edge rounding, not an overlap or a gap.
"""
from __future__ import annotations

import math

import orjson
import psycopg2
from shapely import STRtree
from shapely.geometry import mapping, shape
from shapely.ops import unary_union
from shapely.validation import explain_validity

from database.audit import write_audit
from registry.store import Actor, RegistryError
from telemetry.city import GridKind
from telemetry.orgcodes import parent_of

TOLERANCE_M2 = 1.0
_EARTH_M_PER_DEG = 111_320.0


def _m2(geom, lat0: float) -> float:
    """Area in m² of a lon/lat geometry near latitude lat0."""
    return geom.area * _EARTH_M_PER_DEG ** 2 * math.cos(math.radians(lat0))


def _grids(document: dict) -> list[dict]:
    if document.get("type") != "FeatureCollection" or not isinstance(document.get("features"), list):
        raise RegistryError("expected a GeoJSON FeatureCollection of grid features")
    grids = []
    for index, feature in enumerate(document["features"]):
        props = (feature or {}).get("properties") or {}
        code = str(props.get("code", ""))
        where = f"feature {index}" + (f" (grid {code})" if code else "")
        if len(code) != 15 or not code.isdigit():
            raise RegistryError(f"{where}: properties.code must be a 15-digit grid code")
        try:
            geom = shape(feature["geometry"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistryError(f"{where}: geometry is not GeoJSON: {exc}") from None
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise RegistryError(f"{where}: geometry is a {geom.geom_type}, not a Polygon or MultiPolygon")
        if not geom.is_valid:
            raise RegistryError(f"{where}: geometry is not valid: {explain_validity(geom)}")
        kind = props.get("kind", GridKind.RESIDENTIAL.value)
        if kind not in {k.value for k in GridKind}:
            raise RegistryError(f"{where}: kind {kind!r}: residential or unit")
        grids.append({"code": code, "name": str(props.get("name") or code), "kind": kind,
                      "households": int(props.get("households", 0)), "population": int(props.get("population", 0)),
                      "geom": geom})
    if not grids:
        raise RegistryError("the file has no grid features")
    codes = [g["code"] for g in grids]
    if len(set(codes)) != len(codes):
        raise RegistryError(f"grid {sorted(c for c in codes if codes.count(c) > 1)[0]} appears twice")
    communities = {parent_of(c) for c in codes}
    if len(communities) != 1:
        raise RegistryError(f"the grids belong to {len(communities)} communities ({', '.join(sorted(communities))}): "
                            "import one community at a time")
    return grids


def tiling_problems(grids: list[dict], community, lat0: float) -> list[str]:
    """What keeps these grids from tiling `community` (its boundary): overlaps, parts outside, gaps."""
    problems = []
    geoms = [g["geom"] for g in grids]
    tree = STRtree(geoms)
    for i, j in zip(*tree.query(geoms, predicate="intersects"), strict=True):
        if i < j:
            area = _m2(geoms[i].intersection(geoms[j]), lat0)
            if area > TOLERANCE_M2:
                problems.append(f"grids {grids[i]['code']} and {grids[j]['code']} overlap by {area:,.0f} m²")
    for grid in grids:
        outside = _m2(grid["geom"].difference(community), lat0)
        if outside > TOLERANCE_M2:
            problems.append(f"grid {grid['code']} reaches {outside:,.0f} m² outside its community")
    gap = community.difference(unary_union(geoms))
    parts = [p for p in getattr(gap, "geoms", [gap]) if not p.is_empty and _m2(p, lat0) > TOLERANCE_M2]
    for part in parts:
        point = part.representative_point()
        near = min(grids, key=lambda g: g["geom"].distance(point))["code"]
        problems.append(f"a gap of {_m2(part, lat0):,.0f} m² inside the community, near grid {near} "
                        f"(at {point.x:.6f}, {point.y:.6f})")
    return problems


def import_boundaries(dsn: str, actor: Actor, data: bytes) -> str:
    """Check and store a community's grid boundaries; a summary, or RegistryError naming the grids."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"not JSON: {exc}") from None
    grids = _grids(document)
    community_code = parent_of(grids[0]["code"])
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select boundary from org_units where code = %s and level = 'community'", (community_code,))
            row = cur.fetchone()
            if row is None:
                raise RegistryError(f"no community {community_code} (the first 12 digits of the grid codes)")
            community = shape(row[0])
            cur.execute("select code from grids where community_code = %s", (community_code,))
            existing = {c.strip() for (c,) in cur.fetchall()}
            missing = sorted(existing - {g["code"] for g in grids})
            problems = [f"grid {code} of the community is not in the file (it holds every grid of the community)"
                        for code in missing] + tiling_problems(grids, community, community.centroid.y)
            if problems:
                reason = "; ".join(problems)
                write_audit(cur, actor.user, list(actor.roles), "registry.boundaries.import",
                            f"community:{community_code}", community_code, "refused", reason[:2000],
                            source_address=actor.source_address)
                conn.commit()
                raise RegistryError(f"refused, the grids do not tile community {community_code}: {reason}")
            for g in grids:
                bounds = g["geom"].bounds
                cur.execute("""
                    insert into grids (code, community_code, name, kind, households, population, boundary,
                                       min_lon, min_lat, max_lon, max_lat)
                    values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                    on conflict (code) do update set name = excluded.name, kind = excluded.kind,
                        households = excluded.households, population = excluded.population,
                        boundary = excluded.boundary, min_lon = excluded.min_lon, min_lat = excluded.min_lat,
                        max_lon = excluded.max_lon, max_lat = excluded.max_lat""",
                            (g["code"], community_code, g["name"], g["kind"], g["households"], g["population"],
                             orjson.dumps(mapping(g["geom"])).decode(), *bounds))
            added = sorted({g["code"] for g in grids} - existing)
            write_audit(cur, actor.user, list(actor.roles), "registry.boundaries.import", f"community:{community_code}",
                        community_code, "done", None, None, {"grids": len(grids), "added": added},
                        actor.source_address)
    finally:
        conn.close()
    return f"community {community_code}: {len(grids)} grid boundaries stored ({len(added)} new)"


def export_boundaries(dsn: str, community_code: str) -> dict:
    """A community's grids as `import_boundaries` takes them (download, edit, import again), with
    the community's own boundary in the collection's `community` member (foreign members are
    allowed by RFC 7946 §6.1; the import ignores it)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select name, boundary from org_units where code = %s and level = 'community'",
                        (community_code,))
            row = cur.fetchone()
            if row is None:
                raise RegistryError(f"no community {community_code}")
            cur.execute("select code, name, kind, households, population, boundary from grids "
                        "where community_code = %s order by code", (community_code,))
            features = [{"type": "Feature", "geometry": boundary,
                         "properties": {"code": code.strip(), "name": name, "kind": kind, "households": households,
                                        "population": population}}
                        for code, name, kind, households, population, boundary in cur.fetchall()]
    finally:
        conn.close()
    return {"type": "FeatureCollection", "features": features,
            "community": {"code": community_code, "name": row[0], "boundary": row[1]}}
