"""Who needs help first at the scene of an alarm or a case (在场需关注人员): the current residents of
the building concerned who carry one of `core.ledger.NEEDS_HELP_FIRST` (elderly living alone,
disabled, left-behind children), with where they live in it (entrance, floor, house number), name,
age, those tags and a masked phone — what a dispatcher sending a member, or the fire brigade, needs
to know first.

The building of a case (`building_of_case`): a building the case is linked to (case_subjects: the
building, or a house's building), else its alarm's sensor's building (source key
`alarm:<sensor>/<type>`), else the nearest building within `NEAR_METRES` of the case's position
(its footprint, or its point where it has none), else none: no panel.

Who sees what (decided here, once; the screens only draw what they are given):
- **names** (with floor, house, age, tags, masked phone) only to a viewer whose role handles cases
  (`HANDLING_ROLES`: dispatcher, leader, admin) and whose scope contains the building's grid —
  the people "allowed to see them" the issue names. They already see the case; a building across
  their scope's border (a case near it) is not theirs to read the residents of;
- **everybody else** — another scope, a wall viewer, the wall kiosk nobody is signed in to — the
  count only (and the count per tag): `Scene.people` is None, no name leaves the server;
- **never** a restricted tag (`RESTRICTED_TAGS`: only NEEDS_HELP_FIRST tags are read), never an ID
  number (not even masked: nobody at a scene needs it), a phone only masked (the column every screen
  shows), and never a resident who moved out (`moved_out` today or before).

The reads take `rows(sql, params) -> list[tuple]` (database.reads.Reads.rows, or a cursor's), so the
dashboard reads on its pool and the tests on their own connection.
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from core.ledger import NEEDS_HELP_FIRST, RecordKind, Tag
from core.orgcodes import contains
from core.roles import UserRole

Rows = Callable[[str, object], list]
NEAR_METRES = 30.0           # a case's position this close to a building is at it
SHOWN_MAX = 50               # names listed at most; the count says how many in all
HANDLING_ROLES = frozenset({UserRole.DISPATCHER, UserRole.LEADER, UserRole.ADMIN})
_ALARM_KEY = re.compile(r"alarm:([^/]+)/")
_HELP = [t.value for t in NEEDS_HELP_FIRST]
_ORDER = {tag: n for n, tag in enumerate(NEEDS_HELP_FIRST)}
_CURRENT = "(r.moved_out is null or r.moved_out > current_date)"
_IN_BUILDING = """from houses h join households hh on hh.house_id = h.house_id
    join residents r on r.household_id = hh.household_id
    join resident_tags t on t.resident_id = r.resident_id"""


@dataclass(frozen=True)
class Person:
    """One resident who needs help first, as a handling viewer sees them."""
    name: str
    age: int | None
    tags: tuple[Tag, ...]          # of NEEDS_HELP_FIRST only, in its order
    entrance: int
    floor: int
    house_number: str
    phone_masked: str | None


@dataclass(frozen=True)
class Scene:
    """Who needs help first in one building, as one viewer may see it."""
    building_id: str
    building_name: str
    grid_code: str
    count: int                          # residents needing help first, in all
    by_tag: dict[Tag, int]              # how many carry each tag (one person may carry two)
    people: tuple[Person, ...] | None   # None: this viewer sees the count only

    @property
    def names_shown(self) -> bool:
        return self.people is not None


def may_see_names(role: UserRole | str | None, scope_code: str | None, grid_code: str) -> bool:
    """The rule of the module: a case-handling role whose scope ("" the city) contains the grid."""
    try:
        handling = role is not None and UserRole(role) in HANDLING_ROLES
    except ValueError:
        return False
    return handling and scope_code is not None and contains(scope_code, grid_code)


def building_of_case(rows: Rows, case_id: str) -> str | None:
    """The building a case happens at (see the module for the order), or None."""
    found = rows("""
        select coalesce(
          (select s.subject_id from case_subjects s where s.case_id = c.case_id and s.subject_kind = %(building)s
            order by s.linked_at limit 1),
          (select h.building_id from case_subjects s join houses h on h.house_id::text = s.subject_id
            where s.case_id = c.case_id and s.subject_kind = %(house)s order by s.linked_at limit 1)),
          c.source_key, c.lon, c.lat
          from cases c where c.case_id = %(case)s""",
                 {"building": RecordKind.BUILDING.value, "house": RecordKind.HOUSE.value, "case": case_id})
    if not found:
        return None
    linked, source_key, lon, lat = found[0]
    if linked:
        return linked
    return building_at(rows, source_key, lon, lat)


def building_at(rows: Rows, source_key: str | None, lon: float | None, lat: float | None) -> str | None:
    """An alarm's sensor's building (its source key), else the nearest building within NEAR_METRES."""
    sensor = _ALARM_KEY.match(source_key or "")
    if sensor:
        found = rows("select building_id from sensors where sensor_id = %s", (sensor.group(1),))
        if found:
            return found[0][0]
    if lon is None or lat is None:
        return None
    return building_near(rows, lon, lat)


def building_near(rows: Rows, lon: float, lat: float, metres: float = NEAR_METRES) -> str | None:
    """The building nearest to (lon, lat) within `metres`: by its footprint where it has one (the
    GiST index, a box of degrees first), else by its point."""
    box = metres / 80_000     # degrees: more than `metres` in latitude and in longitude up to ~50° N
    found = rows("""
        with here as (select ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) as pt),
        near as (
          select b.building_id, ST_Distance(coalesce(b.footprint, ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326))
                                            ::geography, here.pt::geography) as d
            from buildings b, here
           where (b.footprint && ST_Expand(here.pt, %(box)s))
              or (b.footprint is null and b.lon between %(lon)s - %(box)s and %(lon)s + %(box)s
                  and b.lat between %(lat)s - %(box)s and %(lat)s + %(box)s))
        select building_id from near where d <= %(metres)s order by d, building_id limit 1""",
                 {"lon": lon, "lat": lat, "box": box, "metres": metres})
    return found[0][0] if found else None


def scene(rows: Rows, building_id: str, role: UserRole | str | None, scope_code: str | None,
          today: date | None = None) -> Scene | None:
    """Who needs help first in the building, as this viewer may see it (None: no such building)."""
    found = rows("select name, grid_code from buildings where building_id = %s", (building_id,))
    if not found:
        return None
    name, grid = found[0][0], found[0][1].strip()
    people = _people(rows, building_id, today)
    by_tag = {tag: sum(tag in p.tags for p in people) for tag in NEEDS_HELP_FIRST}
    shown = tuple(people[:SHOWN_MAX]) if may_see_names(role, scope_code, grid) else None
    return Scene(building_id, name, grid, len(people), {t: n for t, n in by_tag.items() if n}, shown)


def _people(rows: Rows, building_id: str, today: date | None) -> list[Person]:
    """The building's current residents with a NEEDS_HELP_FIRST tag (only those tags read)."""
    found = rows(f"""
        select r.name, r.birth_date, array_agg(distinct t.tag), h.entrance, h.floor, h.number, r.phone_masked
          {_IN_BUILDING}
         where h.building_id = %s and {_CURRENT} and t.tag = any(%s)
         group by r.resident_id, h.entrance, h.floor, h.number""", (building_id, _HELP))
    today = today or date.today()
    people = [Person(name, _age(born, today), tuple(sorted((Tag(t) for t in tags), key=_ORDER.__getitem__)),
                     entrance, floor, number, phone) for name, born, tags, entrance, floor, number, phone in found]
    return sorted(people, key=lambda p: (_ORDER[p.tags[0]], p.entrance, p.floor, p.house_number, p.name))


def _age(born: date | None, today: date) -> int | None:
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def help_counts(rows: Rows, building_ids: Iterable[str]) -> dict[str, int]:
    """How many residents need help first in each building (0 where none): the wall's numbers,
    one query for many buildings."""
    ids = sorted({b for b in building_ids if b})
    if not ids:
        return {}
    found = dict(rows(f"""select h.building_id, count(distinct r.resident_id) {_IN_BUILDING}
                          where h.building_id = any(%s) and {_CURRENT} and t.tag = any(%s)
                          group by h.building_id""", (ids, _HELP)))
    return {b: int(found.get(b, 0)) for b in ids}


class CountCache:
    """help_counts kept for `ttl_s` (a wall's snapshot names every open alarm, and each alarm's
    change is drawn for every wall): a count at most ttl_s old, one query per refresh."""

    def __init__(self, ttl_s: float = 60.0) -> None:
        self.ttl_s = ttl_s
        self._kept: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def counts(self, rows: Rows, building_ids: Iterable[str]) -> dict[str, int]:
        now = time.monotonic()
        wanted = {b for b in building_ids if b}
        with self._lock:
            fresh = {b: n for b, (at, n) in self._kept.items() if b in wanted and now - at < self.ttl_s}
        missing = wanted - fresh.keys()
        if missing:
            found = help_counts(rows, missing)
            with self._lock:
                if len(self._kept) > 100_000:
                    self._kept.clear()
                self._kept.update({b: (now, n) for b, n in found.items()})
            fresh.update(found)
        return fresh

    def count(self, rows: Rows, building_id: str | None) -> int:
        return self.counts(rows, [building_id]).get(building_id, 0) if building_id else 0
