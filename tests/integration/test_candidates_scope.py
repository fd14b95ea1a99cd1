"""Candidates stay inside the viewer's scope (issue 23, item 3): a street's dispatcher asking for the
candidates of a case near its street's border is never sent a member of the next street — not in the
list, not on the map, not among those to reassign to — while a city dispatcher gets both; and the
search keeps the N nearest *in scope* (a nearer member of another street does not push the street's
own member out of the N looked at). Against the real stack: live positions in Redis as the ingest
writes them, the console's own callback over HTTP as each user."""
from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone

import psycopg2
import pytest
from shapely.geometry import Point

from cases import store
from cases.machine import apply
from cases.model import Actor, ActorKind, Dispatch, Register
from core.orgcodes import Level, ancestor
from dispatch.candidates import HANDLING_ROLES, Settings, find, first_available
from dispatch.roster import RosterCache, load
from ingest.live import LiveState
from ingest.model import Enriched
from telemetry.messages import Fix

from .screens import ensure_logins, post_callback, session_cookie
from .test_case_notices import _reported_case
from .test_cases_engine import seeded

pytestmark = pytest.mark.slow
METRE = 1 / 111_320
STREET_DISPATCHER = "t-cand-street-disp"
CITY_DISPATCHER = "t-dispatcher"             # screens.TEST_LOGINS: a dispatcher of the whole city


@pytest.fixture(scope="module")
def cases_settings(stack, city):
    return seeded(stack)


@pytest.fixture(scope="module")
def border(stack, city):
    """Two grids of two streets that share a stretch of border (the last such pair, away from where
    other tests put members), a point on it, and the unit vector (in degrees per metre) from it
    into the first grid; a handling member of each grid, on duty today."""
    pairs = [(a, b) for a in city.grids for b in city.grids
             if ancestor(a.code, Level.STREET) < ancestor(b.code, Level.STREET)
             and a.boundary.intersection(b.boundary).geom_type == "LineString"
             and a.boundary.intersection(b.boundary).length > 300 * METRE]
    a, b = pairs[-1]
    shared = a.boundary.intersection(b.boundary)
    on_border = shared.interpolate(0.5, normalized=True)
    inside = a.boundary.representative_point()
    dx, dy = inside.x - on_border.x, inside.y - on_border.y
    norm = math.hypot(dx, dy)
    into_a = (dx / norm * METRE, dy / norm * METRE)
    conn = psycopg2.connect(stack.settings().pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            today = RosterCache().today(datetime.now(timezone.utc), lambda day: load(cur, day))
    finally:
        conn.close()
    now = datetime.now(timezone.utc)

    def member_of(grid):
        return next(m for m in city.members if m.grid_code == grid.code and m.role in HANDLING_ROLES
                    and today.on_duty(m.terminal_id, now))

    ensure_logins(stack.settings().pg_dsn, {STREET_DISPATCHER: ("dispatcher", ancestor(a.code, Level.STREET))})
    return a, b, (on_border.x, on_border.y), into_a, member_of(a), member_of(b)


def _at(origin, into, metres: float) -> tuple[float, float]:
    """(lon, lat) `metres` from `origin` along `into` (negative: the other way)."""
    return origin[0] + into[0] * metres, origin[1] + into[1] * metres


def _stand(settings, city, placed: list) -> None:
    """Members located now at (lon, lat), online, as the ingest writes it (grid: where they stand)."""
    now = datetime.now(timezone.utc)
    r = settings.redis_client()
    try:
        state = LiveState(r)
        state.ensure_schema()
        state.apply([Enriched(Fix(terminal_id=m.terminal_id, time=now, lat=lat, lon=lon, source="gcc"),
                              grid.code, member_id=m.member_id, home_grid_code=m.grid_code, received_at=now)
                     for m, grid, (lon, lat) in placed])
    finally:
        r.close()


@pytest.fixture
def placed(stack, city, border):
    """The case's place 20 m inside grid A; street B's member 10 m across the border (the nearer), street
    A's member 60 m inside grid A, both online and located just now."""
    a, b, on_border, into_a, member_a, member_b = border
    case_at = _at(on_border, into_a, 20)
    assert a.boundary.contains(Point(*case_at))
    _stand(stack.settings(), city, [(member_b, b, _at(on_border, into_a, -10)),
                                    (member_a, a, _at(on_border, into_a, 60))])
    return case_at, member_a, member_b


def _registered_case(stack, cases_settings, grid, lon_lat, handler=None) -> str:
    """A registered case at (lon, lat) in `grid` (offered to `handler`, if one is named)."""
    case_id = _reported_case(stack, cases_settings, grid.code)
    owner = psycopg2.connect(stack.settings().pg_dsn)
    try:
        with owner, owner.cursor() as cur:
            cur.execute("update cases set lon = %s, lat = %s, category = 'exposed_garbage' where case_id = %s",
                        (*lon_lat, case_id))
    finally:
        owner.close()
    conn = psycopg2.connect(cases_settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            rules = store.load_rules(cur)
            actor = Actor(ActorKind.USER, CITY_DISPATCHER, frozenset({"dispatcher"}), "")
            offer = [Dispatch(handler.terminal_id, handler.grid_code, why="test")] if handler else []
            for command in [Register(), *offer]:
                outcome = apply(store.load(cur, case_id), command, actor, datetime.now(timezone.utc), rules)
                store.save(cur, outcome.case, rules)
                store.add_events(cur, outcome.events)
    finally:
        conn.close()
    return case_id


def _candidates(dashboard, username: str, case_id: str) -> dict:
    """The console's candidates callback for `case_id`, as `username`'s browser would ask for it."""
    body = {"output": "..dispatch-candidates.children...dispatch-cand-layer.data...dispatch-map.viewport..",
            "outputs": [{"id": "dispatch-candidates", "property": "children"},
                        {"id": "dispatch-cand-layer", "property": "data"},
                        {"id": "dispatch-map", "property": "viewport"}],
            "inputs": [{"id": "dispatch-selected", "property": "data", "value": case_id},
                       {"id": "dispatch-result", "property": "children", "value": None},
                       {"id": "dispatch-cand-tick", "property": "n_intervals", "value": None}],
            "changedPropIds": ["dispatch-selected.data"]}
    return json.loads(post_callback(dashboard.url, session_cookie(dashboard.url, username), body))["response"]


def _strings(value) -> set[str]:
    """Every string anywhere in a callback's answer (texts, ids, labels)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*map(_strings, value.values()), *map(_strings, value.keys())) if value else set()
    if isinstance(value, list):
        return set().union(*map(_strings, value)) if value else set()
    return set()


def _buttons(value, kind: str) -> list[str]:
    """The terminals of the buttons of `kind` (dispatch-offer, dispatch-reassign) in a callback's answer."""
    found = []
    if isinstance(value, dict):
        if isinstance(value.get("id"), dict) and value["id"].get("type") == kind:
            found.append(value["id"]["terminal"])
        for v in value.values():
            found += _buttons(v, kind)
    elif isinstance(value, list):
        for v in value:
            found += _buttons(v, kind)
    return found


def _mentions(answer: dict, member) -> bool:
    """The answer names the member anywhere: their terminal, or their name in a text or a marker's label."""
    return any(member.terminal_id in s or member.name in s for s in _strings(answer))


def test_a_street_dispatcher_gets_only_its_streets_candidates_and_a_city_dispatcher_both(stack, city, border, placed,
                                                                                       cases_settings, dashboard):
    a, b, *_ = border
    case_at, member_a, member_b = placed
    case_id = _registered_case(stack, cases_settings, a, case_at)

    street = _candidates(dashboard, STREET_DISPATCHER, case_id)
    assert member_a.terminal_id in _buttons(street, "dispatch-offer")
    assert not _mentions(street, member_b), "a member of the next street sent to the street's dispatcher"
    assert all(city.member_by_terminal[t].grid_code.startswith(ancestor(a.code, Level.STREET))
               for t in _buttons(street, "dispatch-offer"))

    everyone = _buttons(_candidates(dashboard, CITY_DISPATCHER, case_id), "dispatch-offer")
    assert member_a.terminal_id in everyone and member_b.terminal_id in everyone


def test_the_members_to_reassign_to_are_inside_the_viewers_scope_too(stack, city, border, placed, cases_settings,
                                                                     dashboard):
    a, b, *_ = border
    case_at, member_a, member_b = placed
    handler = next(m for m in city.members if m.grid_code == a.code and m.role in HANDLING_ROLES
                   and m.terminal_id != member_a.terminal_id)
    case_id = _registered_case(stack, cases_settings, a, case_at, handler=handler)

    street = _candidates(dashboard, STREET_DISPATCHER, case_id)
    assert member_a.terminal_id in _buttons(street, "dispatch-reassign")
    assert not _mentions(street, member_b), "a member of the next street offered to reassign to"
    assert member_b.terminal_id in _buttons(_candidates(dashboard, CITY_DISPATCHER, case_id), "dispatch-reassign")


def test_the_search_keeps_the_nearest_in_scope_not_the_nearest_then_filtered(stack, city, border, placed,
                                                                             settings):
    """One terminal looked at: street B's member is nearer, yet the street's search finds street A's."""
    a, b, *_ = border
    (lon, lat), member_a, member_b = placed
    r = settings.redis_client()
    try:
        look = Settings(radius_m=400, look_at=1)
        city_wide = find(r, city, "exposed_garbage", a.code, lat, lon, lambda t: [], time.time(), look)
        assert city_wide.looked_at == 1 and [c.terminal_id for c in city_wide.candidates] == [member_b.terminal_id]
        street = find(r, city, "exposed_garbage", a.code, lat, lon, lambda t: [], time.time(), look,
                      scope_code=ancestor(a.code, Level.STREET))
        assert [c.terminal_id for c in street.candidates] == [member_a.terminal_id]
        assert street.looked_at == 1 and not street.left_out            # nothing said of those outside
    finally:
        r.close()


def test_the_engine_offers_a_case_only_to_a_member_of_the_cases_own_street(stack, city, border, placed, cases_settings,
                                                                          settings):
    """The automatic dispatch (the cases engine's pick): street B's member, nearer and available, is
    never offered street A's case; with street A's member excluded (already offered), nobody is."""
    a, b, *_ = border
    case_at, member_a, member_b = placed
    case_id = _registered_case(stack, cases_settings, a, case_at)
    r = settings.redis_client()
    conn = psycopg2.connect(cases_settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            case = store.load(cur, case_id, lock=False)
            first = first_available(r, city, cur, case, frozenset(), time.time())
            assert first is not None and first.terminal_id == member_a.terminal_id
            others = frozenset(m.terminal_id for m in city.members if m.grid_code.startswith(
                ancestor(a.code, Level.STREET)))
            assert first_available(r, city, cur, case, others, time.time()) is None   # never street B's member
    finally:
        conn.close()
        r.close()
