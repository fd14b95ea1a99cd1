"""The ledger's statistics (基础数据统计, issue 26: "bar and pie charts per org unit and drill-down"):
what an org unit's ledger holds, counted per child of the unit (a district's streets, a street's
communities, a community's grids; a grid counts as itself) so that a chart's bar is a child a
leader can open.

Every count is **scoped** (nothing outside the scope is counted, however it is asked) and
**set-based**: one `group by` per chart family, over the grid codes every ledger row carries (a
resident, a house, a part, a unit is counted where it is, without a join to find its place; the
child is the grid code's prefix). Restricted tags (core.ledger.RESTRICTED_TAGS) are counted only
for a viewer holding Permission.RESTRICTED_TAGS over the whole scope: otherwise the database never
counts them (filtered in the query), so not even their number leaves it.

Residents who moved out (`moved_out` today or before) are not counted: they are kept only for the
deletion job's period. Ages are on the city's date.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from core.catalogue import Label
from core.city import CITY_TZ
from core.ledger import RESTRICTED_TAGS, HouseUse, Permission, RecordKind, Registration, Tag, ThingKind, ThingState
from core.orgcodes import Level, Scope, level_of
from database.reads import Reads
from ledger import grants

# age bands (lowest age, highest age or None), as the community's reports count them
AGE_BANDS: tuple[tuple[int, int | None], ...] = ((0, 6), (7, 17), (18, 34), (35, 59), (60, 79), (80, None))
UNKNOWN_AGE = "unknown"
UNKNOWN_AGE_LABEL = Label("age unknown", "年龄不详")
# A street's or a wider scope's counts are kept this long (per scope and restricted-or-not; the
# grant is still asked at every request). Measured on the demo city (148,000 residents, 2 cores):
# the whole city 216 ms (residents 82, tags 76, houses 25, changes 23), a street 78, a community 36,
# a grid 25; the big city's 2 million residents make the city's and a district's count ~13x that,
# a street's and a community's about the same as here: only the wide scopes are kept.
WIDE_KEEP_S = 120.0
CHANGE_MONTHS = 12          # change per month: this many months back, the current one included


def band_name(low: int, high: int | None) -> str:
    """An age band's key and label ("0-6", "80+")."""
    return f"{low}-{high}" if high is not None else f"{low}+"


AGE_BAND_NAMES = tuple(band_name(low, high) for low, high in AGE_BANDS)

Counts = dict[str, dict[str, int]]      # a child's code -> a value -> how many


@dataclass(frozen=True)
class LedgerStats:
    """One scope's ledger in numbers, per child (`children`, in code order, each with its name)."""
    scope_code: str
    children: tuple[tuple[str, str], ...]     # (code, name): the bars a click drills into
    drills: bool                               # the children are below the scope (False: a grid)
    restricted_counted: bool                   # the viewer holds RESTRICTED_TAGS over the whole scope
    registration: Counts                       # residents by Registration
    ages: Counts                               # residents by AGE_BAND_NAMES (and UNKNOWN_AGE)
    tags: Counts                               # residents by Tag (restricted ones only if counted)
    houses: Counts                             # houses by HouseUse
    unit_kinds: dict[str, int]                 # shops and units by kind, in the scope
    fire_key_units: dict[str, int]             # per child: fire-safety key units
    parts: dict[tuple[str, str], int]          # (ThingKind, ThingState) -> how many
    changes: tuple[tuple[str, str, str, int], ...]   # (YYYY-MM, ChangeAction, Channel, how many), by month

    def total(self, counts: Counts) -> dict[str, int]:
        """A per-child count summed over the children (the scope's own numbers)."""
        summed: dict[str, int] = {}
        for per_value in counts.values():
            for value, n in per_value.items():
                summed[value] = summed.get(value, 0) + n
        return summed


def child_length(scope_code: str) -> int:
    """How many characters of a grid code name the scope's child (a grid: all 15)."""
    if not scope_code:
        return Level.DISTRICT.code_length
    level = level_of(scope_code)
    return (level.child or level).code_length


def _today() -> date:
    return datetime.now(CITY_TZ).date()


def _years_ago(today: date, years: int) -> date:
    """The birthday `years` ago (29 February in a year without one: the 28th)."""
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        return today.replace(year=today.year - years, day=28)


def _age_band_sql(today: date) -> tuple[str, dict]:
    """A `case` naming the band of r.birth_date on `today` (dates compared: an index-free but exact
    age, no per-row arithmetic), with its arguments."""
    arms, args = [], {}
    for n, (low, _high) in enumerate(reversed(AGE_BANDS)):
        args[f"born_{n}"] = _years_ago(today, low)
        args[f"band_{n}"] = band_name(*AGE_BANDS[len(AGE_BANDS) - 1 - n])
        arms.append(f"when r.birth_date <= %(born_{n})s then %(band_{n})s")
    return f"case when r.birth_date is null then %(unknown)s {' '.join(arms)} end", {**args, "unknown": UNKNOWN_AGE}


def _counts(rows) -> Counts:
    found: Counts = {}
    for child, value, n in rows:
        found.setdefault(child.strip(), {})[value] = n
    return found


class StatsReads(Reads):
    """The statistics page's reads, on a pool of the dashboard's connections."""

    def children(self, scope: Scope) -> tuple[tuple[str, str], ...]:
        """The scope's children (code, name), in code order: the bars of its charts."""
        length = child_length(scope.code)
        if scope.code and len(scope.code) == length:           # a grid: itself
            return ((scope.code, self.city.org_name(scope.code)),)
        units = {Level.DISTRICT.code_length: self.city.districts, Level.STREET.code_length: self.city.streets,
                 Level.COMMUNITY.code_length: self.city.communities, Level.GRID.code_length: self.city.grids}[length]
        return tuple(sorted((u.code, u.name) for u in units if u.code.startswith(scope.code)))

    def _grids(self, scope: Scope) -> list[str] | None:
        """The scope's grid codes (None: the whole city, no filter): a community's counts read its
        grids' rows through the grid indexes instead of every row of the city, and a scope holding
        every grid reads every row without a list to match (measured: 367 ms with it, 164 without,
        on 132,000 residents)."""
        grids = [g.code for g in self.city.grids if scope.covers(g.code)]
        return None if len(grids) == len(self.city.grids) else grids     # every grid (a one-district city): none

    def __init__(self, city, dsn: str, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(city, dsn)
        self._clock = clock
        self._kept: dict[tuple[str, bool], tuple[float, LedgerStats]] = {}
        self._lock = threading.Lock()

    def stats(self, scope: Scope, viewer: str) -> LedgerStats:
        """The scope's numbers, per child, as `viewer` may see them (see the module). The grant is
        asked at every call; a street's or a wider scope's counts are kept WIDE_KEEP_S seconds per
        (scope, restricted counted or not), so a leader going down and back up, or a second
        leader, does not count a district's two million residents again (see WIDE_KEEP_S)."""
        with self._cursor() as cur:
            restricted = grants.holds(cur, viewer, Permission.RESTRICTED_TAGS, scope.code)
        key = (scope.code, restricted)
        wide = len(scope.code) < Level.COMMUNITY.code_length
        now = self._clock()
        with self._lock:
            kept = self._kept.get(key) if wide else None
        if kept is not None and now - kept[0] < WIDE_KEEP_S:
            return kept[1]
        found = self._count(scope, restricted)
        if wide:
            with self._lock:
                self._kept[key] = (now, found)
        return found

    def _count(self, scope: Scope, restricted: bool) -> LedgerStats:
        """The scope's numbers counted now (restricted tags only if `restricted`)."""
        grids = self._grids(scope)
        length = child_length(scope.code)
        where = _in_scope(grids, "")
        today = _today()
        band, band_args = _age_band_sql(today)
        args = {"grids": grids, "n": length, "scope": scope.code, **band_args,
                "hidden": [] if restricted else sorted(RESTRICTED_TAGS)}
        with self._cursor() as cur:
            people = self._people(cur, _in_scope(grids, "r."), band, args)
            cur.execute(f"select left(grid_code, %(n)s), t.tag, count(*) from resident_tags t join residents r "
                        f"using (resident_id) where {_in_scope(grids, 'r.')} and {_CURRENT} "
                        f"and t.tag <> all(%(hidden)s::text[]) group by 1, 2", args)
            tags = _counts(cur.fetchall())
            cur.execute(f"select left(grid_code, %(n)s), use, count(*) from houses where {where} group by 1, 2", args)
            houses = _counts(cur.fetchall())
            cur.execute(f"select kind, count(*) from units where {where} group by 1 order by 2 desc, 1", args)
            unit_kinds = dict(cur.fetchall())
            cur.execute(f"select left(grid_code, %(n)s), count(*) from units where {where} and fire_key_unit "
                        "group by 1", args)
            fire = {child.strip(): n for child, n in cur.fetchall()}
            cur.execute(f"select kind, state, count(*) from things where {where} group by 1, 2", args)
            parts = {(kind, state): n for kind, state, n in cur.fetchall()}
            changes = self._changes(cur, scope, today)
        registration, ages = people
        drills = len(scope.code) < Level.GRID.code_length
        return LedgerStats(scope.code, self.children(scope), drills, restricted, registration, ages, tags, houses,
                           unit_kinds, fire, parts, changes)

    @staticmethod
    def _people(cur, where: str, band: str, args: dict) -> tuple[Counts, Counts]:
        """Residents by registration and by age band, per child, in one pass over the scope's rows."""
        cur.execute(f"""
            select left(r.grid_code, %(n)s), r.registration, {band}, count(*)
              from residents r where {where} and {_CURRENT}
             group by 1, 2, 3""", args)
        registration: Counts = {}
        ages: Counts = {}
        for child, reg, age, n in cur.fetchall():
            child = child.strip()
            per = registration.setdefault(child, {})
            per[reg] = per.get(reg, 0) + n
            per = ages.setdefault(child, {})
            per[age] = per.get(age, 0) + n
        return registration, ages

    @staticmethod
    def _changes(cur, scope: Scope, today: date) -> tuple[tuple[str, str, str, int], ...]:
        """Changes of the scope's records per month (city time), action and channel, the last
        CHANGE_MONTHS months. A change's place is the grid its record had (after, else before: a
        deleted record's last); a building's and a household's history names none, so theirs is
        their building's or their house's grid."""
        months = today.year * 12 + today.month - 1 - (CHANGE_MONTHS - 1)
        first = date(months // 12, months % 12 + 1, 1)
        cur.execute("""
            select to_char(c.changed_at at time zone %(tz)s, 'YYYY-MM'), c.action, c.channel, count(*)
              from ledger_changes c
              left join buildings b on c.record_kind = %(building)s and b.building_id = c.record_id
              left join houses h on c.record_kind = %(household)s
                    and h.house_id = (coalesce(c.after, c.before) ->> 'house_id')::bigint
             where c.changed_at >= (%(first)s::timestamp at time zone %(tz)s)
               and org_contains(%(scope)s, coalesce(c.after ->> 'grid_code', c.before ->> 'grid_code',
                                                    b.grid_code, h.grid_code))
             group by 1, 2, 3 order by 1, 2, 3""",
                    {"tz": str(CITY_TZ), "building": RecordKind.BUILDING.value, "household": RecordKind.HOUSEHOLD.value,
                     "first": first, "scope": scope.code})
        return tuple(cur.fetchall())


def _in_scope(grids: list[str] | None, alias: str) -> str:
    """The scope as a condition on a row's grid code (`alias` its table's, "r." or "")."""
    return "true" if grids is None else f"{alias}grid_code = any(%(grids)s::bpchar[])"


_CURRENT = "(r.moved_out is null or r.moved_out > current_date)"

# what each chart's values are (their order on the charts)
REGISTRATIONS = tuple(r.value for r in Registration)
HOUSE_USES = tuple(u.value for u in HouseUse)
TAGS = tuple(t.value for t in Tag)
THING_KINDS = tuple(k.value for k in ThingKind)
THING_STATES = tuple(s.value for s in ThingState)
