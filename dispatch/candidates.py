"""The nearest available member for a case: who could go, ranked, and why each is where they are.

Candidates come from Redis (`GEOSEARCH … BYRADIUS … ASC COUNT` over the live positions, telemetry.live
Keys.POSITIONS: a quarter of the radius first, the whole radius when that holds too few), nearest
first, each with its live state read in one pipeline; only members inside the viewer's scope (an org
code; "" the whole city) are ever looked at — the search reads further down Redis's list until it has
`look_at` of them, so a crowd from the next street never pushes the street's own members out, and
nothing of those outside (not even how many) leaves the search; then ranked:

    1. available (on duty, online, a fix of the last FRESH_S) before anyone busy;
    2. a role that fits the category (ROLES_FOR: the police officer for public-order matters, the
       administrator or coordinator for city management; any member otherwise);
    3. the case's own grid, then its community, then beyond;
    4. fewer open cases (workload);
    5. nearer.

Off-duty members (the roster), offline ones and those with no recent position are left out (the
dispatcher cannot send them, and the reason is counted). The ETA says what it is: straight-line
distance × a detour factor at walking speed; a road network, if one is ever loaded, would give
routed times through the same `eta_s`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from config.settings import Settings as AppSettings
from core.city import City
from core.orgcodes import Level, ancestor, contains
from core.roles import ROLE_LABELS, Role
from dispatch.roster import RosterCache
from dispatch.roster import load as load_roster
from dispatch.status import FRESH_S, IN_HAND, DispatchStatus, Status, status_of
from telemetry.live import Keys, TerminalLive, read_terminals, read_whereabouts

# who fits which kind of case (a category not named: any member)
PUBLIC_ORDER = ("neighbour_dispute", "noise", "street_vending", "illegal_parking", "blocked_fire_lane")
CITY_MANAGEMENT = ("exposed_garbage", "dirty_road", "flyposting", "illegal_construction", "damaged_road",
                   "manhole_cover", "street_light", "public_facility", "stray_animal")
ROLES_FOR: dict[str, tuple[Role, ...]] = {
    **dict.fromkeys(PUBLIC_ORDER, (Role.GRID_POLICE_OFFICER, Role.GRID_ADMINISTRATOR)),
    **dict.fromkeys(CITY_MANAGEMENT, (Role.GRID_ADMINISTRATOR, Role.GRID_COORDINATOR)),
}
HANDLING_ROLES = (Role.GRID_ADMINISTRATOR, Role.GRID_COORDINATOR, Role.GRID_POLICE_OFFICER)   # supervisors verify


@dataclass(frozen=True)
class Settings:
    radius_m: float = 3000.0        # how far to look
    look_at: int = 60               # at most this many nearest terminals are looked at (10 % available: ~6)
    fresh_s: float = FRESH_S
    detour: float = 1.3             # street distance ÷ straight-line distance (a grid of city blocks)
    walk_mps: float = 1.2           # a member on foot

    @classmethod
    def from_settings(cls, settings: AppSettings) -> Settings:
        """The search the settings name (GCC_DISPATCH_RADIUS_M, _DETOUR, _WALK_MPS)."""
        return cls(radius_m=settings.dispatch_radius_m, detour=settings.dispatch_detour,
                   walk_mps=settings.dispatch_walk_mps)


@dataclass(frozen=True)
class Candidate:
    terminal_id: str
    name: str
    role: Role
    grid_code: str                  # the member's home grid
    lon: float                      # where they are now (their last fix)
    lat: float
    distance_m: float
    eta_s: float
    status: Status
    tier: int                       # 0 the case's grid, 1 its community, 2 beyond
    role_fits: bool
    reason: str                     # the rank, in words

    @property
    def available(self) -> bool:
        return self.status.status is DispatchStatus.AVAILABLE


@dataclass
class Search:
    candidates: list[Candidate]
    looked_at: int = 0
    left_out: dict[str, int] = field(default_factory=dict)   # why some were not candidates: how many


def eta_s(distance_m: float, settings: Settings) -> float:
    return distance_m * settings.detour / settings.walk_mps


def _tier(case_grid: str | None, member_grid: str) -> int:
    if case_grid and member_grid == case_grid:
        return 0
    if case_grid and ancestor(member_grid, Level.COMMUNITY) == ancestor(case_grid, Level.COMMUNITY):
        return 1
    return 2


_TIER_WORDS = ("same grid", "same community", "another community")


def rank(candidates: list[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (not c.available, not c.role_fits, c.tier, c.status.workload,
                                             c.distance_m))


def visible(city: City, scope_code: str, terminal_id: str) -> bool:
    """May a viewer of `scope_code` ("" the whole city) be shown this terminal as a candidate: its
    member's own grid lies inside the scope. The whole city sees every terminal (a stranger is then
    left out as "not a member", and counted); a scope sees its own members only."""
    if not scope_code:
        return True
    member = city.member_by_terminal.get(terminal_id)
    return member is not None and contains(scope_code, member.grid_code)


def nearest(r, lat: float, lon: float, settings: Settings, keep: Callable[[str], bool]) -> list[tuple[str, float]]:
    """The `settings.look_at` nearest terminals within the radius that `keep` keeps, nearest first,
    as (terminal, metres). Near first (a small circle is cheap for Redis to sort), the whole radius
    only when that holds too few; within a circle, when those not kept took places in Redis's
    COUNT, the same list is read further down (4× at a time) until enough are kept or the circle
    holds no more: the N nearest kept, never the N nearest then filtered to fewer."""
    kept: list[tuple[str, float]] = []
    for radius in (settings.radius_m / 4, settings.radius_m):
        count = settings.look_at
        while True:
            hits = [(t.decode() if isinstance(t, bytes) else t, float(d))
                    for t, d in r.geosearch(Keys.POSITIONS, longitude=lon, latitude=lat, radius=radius, unit="m",
                                            sort="ASC", count=count, withdist=True)]
            kept = [h for h in hits if keep(h[0])]
            if len(kept) >= settings.look_at or len(hits) < count:
                break
            count *= 4
        if len(kept) >= settings.look_at:
            break
    return kept[:settings.look_at]


def find(r, city: City, category: str, case_grid: str | None, lat: float, lon: float,
         work: Callable[[str], list[str]], now: float, settings: Settings = Settings(),
         exclude: frozenset[str] = frozenset(), on_duty: Callable[[str], bool] = lambda t: True,
         scope_code: str = "") -> Search:
    """The ranked candidates for a case at (lat, lon), among the members inside `scope_code` (the
    viewer's org unit; "" the whole city: the cases engine, a city dispatcher). `work(terminal_id)`
    gives the states of the open cases dispatched to that terminal; `exclude`: terminals already
    offered this case; `on_duty(terminal_id)`: the duty roster's word."""
    hits = nearest(r, lat, lon, settings, lambda t: visible(city, scope_code, t))
    ids = [t for t, _ in hits]
    lives = {t.terminal_id: t for t in read_whereabouts(r, ids, now)}
    fits = ROLES_FOR.get(category)
    search = Search([], looked_at=len(ids))
    for terminal_id, distance in hits:
        member = city.member_by_terminal.get(terminal_id)
        why_not = _left_out(member, terminal_id, exclude)
        status = status_of(lives.get(terminal_id), work(terminal_id), now, settings.fresh_s, on_duty(terminal_id))
        if why_not is None and status.status in (DispatchStatus.OFF_DUTY, DispatchStatus.OFFLINE,
                                                 DispatchStatus.UNAVAILABLE):
            why_not = status.status.value
        if why_not is not None:
            search.left_out[why_not] = search.left_out.get(why_not, 0) + 1
            continue
        tier = _tier(case_grid, member.grid_code)
        role_fits = fits is None or member.role in fits
        here = lives[terminal_id]
        search.candidates.append(Candidate(terminal_id, member.name, member.role, member.grid_code, here.lon, here.lat,
                                           distance, eta_s(distance, settings), status, tier, role_fits,
                                           ""))
    ranked = rank(search.candidates)
    search.candidates = [_explained(c, n) for n, c in enumerate(ranked, 1)]
    return search


def _left_out(member, terminal_id: str, exclude: frozenset[str]) -> str | None:
    if member is None:
        return "not a member"
    if member.role not in HANDLING_ROLES:
        return "supervisor (verifies, does not handle)"
    if terminal_id in exclude:
        return "offered already"
    return None


def _explained(c: Candidate, n: int) -> Candidate:
    parts = [c.status.status.value if not c.available else "available",
             ROLE_LABELS[c.role].en + (" fits the category" if c.role_fits else " (not the usual role for it)"),
             _TIER_WORDS[c.tier], f"{c.status.workload} open", f"{c.distance_m:.0f} m"]
    return Candidate(**{**c.__dict__, "reason": f"#{n}: " + " · ".join(parts)})


EARTH_RADIUS_M = 6_371_008.8


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance (haversine), as Redis's GEO commands measure it."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def live_of(r, terminal_id: str, now: float) -> TerminalLive | None:
    found = read_terminals(r, [terminal_id], now)
    return found[0] if found else None


_IN_HAND_SQL = ", ".join(f"'{s.value}'" for s in IN_HAND)          # the states from the enum, as SQL literals
OPEN_WORK = ("select handler, array_agg(state) from cases where handler is not null "
             f"and state in ({_IN_HAND_SQL}) group by handler")


def open_work(cur) -> dict[str, list[str]]:
    """Every terminal's open case work: the states of the cases dispatched to it."""
    cur.execute(OPEN_WORK)
    return dict(cur.fetchall())


def first_available(r, city: City, cur, case, exclude: frozenset[str], now: float,
                    settings: Settings = Settings(), roster: RosterCache | None = None) -> Candidate | None:
    """The top available candidate for a case with a place, not one of `exclude` (None: nobody),
    among the members of the case's own street (`engine_scope`): the engine offers no case to
    another street's member, whose street's console would not even show it."""
    if case.lat is None or case.lon is None:
        return None
    work = open_work(cur)
    at = datetime.fromtimestamp(now, timezone.utc)
    today = roster.today(at, lambda day: load_roster(cur, day)) if roster is not None else None
    search = find(r, city, case.category, case.grid_code, case.lat, case.lon, lambda t: work.get(t, []), now,
                  settings, exclude, (lambda t: today.on_duty(t, at)) if today is not None else (lambda t: True),
                  scope_code=engine_scope(case.org_code))
    return next((c for c in search.candidates if c.available), None)


def engine_scope(org_code: str) -> str:
    """Where the engine looks for a case's handler: the street holding the case (a case held at a
    district looks in the district)."""
    return org_code if len(org_code) < Level.STREET.code_length else ancestor(org_code, Level.STREET)
