"""What the basic-data page (基础数据, dashboard/pages/ledger.py) reads of the ledger: residents found
by name, ID number, phone or address; a building's floors × houses; a house's households and
residents. Every read is **scoped** (an org unit's `Scope`: nothing outside it is found, however it
is asked) and **masked by default**: an ID number or phone leaves here only as its mask
(`id_number_masked`, `phone_masked`), restricted tags only for a viewer holding
`Permission.RESTRICTED_TAGS` over the resident's grid (ledger.grants; asked in the same query, for
each resident's own grid). The one way to a value in full is `open_personal`, which the page calls
inside the audited unmask command, after ledger.grants.holds(UNMASK) for the resident's grid.

Search by ID number or phone is an exact match through the keyed index (`Sealer.index`): the text
searched is normalized, indexed and forgotten; it is never logged, stored, or put in an error.
Moved-out residents (`moved_out` today or before) are left out: they are kept only for the deletion
job's period, not shown.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from core.city import CITY_TZ
from core.ledger import NEEDS_HELP_FIRST, RESTRICTED_TAGS, Gender, HouseUse, Permission, Registration, Relation, Tag
from core.orgcodes import Scope
from database.reads import Reads, like_escape
from ledger import grants, privacy

SHOWN_RESULTS = 50          # a search shows this many; more: narrow it
UNMASK_REASON_MAX = 200     # the reason typed for an unmasked view
SEARCH_MAX = 100            # what a search box takes
_ID_FORM = re.compile(r"\d{17}[\dX]")
_TAG_ORDER = {tag: n for n, tag in enumerate((*NEEDS_HELP_FIRST, *Tag))}
_RELATION_ORDER = {relation: n for n, relation in enumerate(Relation)}


class SearchKind(StrEnum):
    NAME = "name"               # a prefix of the name
    ID_NUMBER = "id_number"     # exact, through the keyed index
    PHONE = "phone"             # exact, through the keyed index
    ADDRESS = "address"         # a building's name (a part of it), optionally a house number after it


class SearchError(ValueError):
    """A search that cannot be run as typed, with what to type instead (never the text itself)."""


@dataclass(frozen=True)
class Resident:
    resident_id: int
    name: str
    gender: Gender
    age: int | None
    id_number_masked: str | None
    phone_masked: str | None
    registration: Registration
    relation: Relation
    household_id: int | None
    house_id: int | None
    building_id: str | None
    building_name: str | None
    entrance: int | None
    floor: int | None
    house_number: str | None
    grid_code: str
    tags: tuple[Tag, ...]       # only those this viewer may see, those needing help first
    may_unmask: bool            # the viewer holds UNMASK over the resident's grid (checked again on use)


@dataclass(frozen=True)
class House:
    house_id: int
    entrance: int
    floor: int
    number: str
    use: HouseUse
    area_m2: float | None
    residents: int
    needs_help: bool            # a resident tagged with one of NEEDS_HELP_FIRST
    restricted: bool            # a resident with a restricted tag (False unless the viewer may see them)


@dataclass(frozen=True)
class Building:
    building_id: str
    name: str
    grid_code: str
    floors: int
    entrances: int
    houses: tuple[House, ...]


@dataclass(frozen=True)
class Household:
    household_id: int
    head_id: int | None
    residents: tuple[Resident, ...]     # the head first, then by relation and age


@dataclass(frozen=True)
class HouseDetail:
    house: House
    building_id: str
    building_name: str
    grid_code: str
    households: tuple[Household, ...]


def age_on(birth_date: date | None, today: date) -> int | None:
    if birth_date is None:
        return None
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


def _today() -> date:
    return datetime.now(CITY_TZ).date()


_GRANTED = ("exists (select 1 from ledger_grants g where g.username = %(viewer)s and g.permission = {perm} "
            "and g.revoked_at is null and org_contains(g.scope_code, {grid}))")
_RESIDENT_COLUMNS = f"""
    r.resident_id, r.name, r.gender, r.birth_date, r.id_number_masked, r.phone_masked, r.registration,
    r.relation, r.household_id, h.house_id, h.building_id, b.name, h.entrance, h.floor, h.number, r.grid_code,
    array(select t.tag from resident_tags t where t.resident_id = r.resident_id
           and (t.tag <> all(%(restricted)s) or {_GRANTED.format(perm="%(see_restricted)s", grid="r.grid_code")})),
    {_GRANTED.format(perm="%(unmask)s", grid="r.grid_code")}"""
_RESIDENT_FROM = """
    from residents r left join households hh on hh.household_id = r.household_id
         left join houses h on h.house_id = hh.house_id left join buildings b on b.building_id = h.building_id"""
_CURRENT = "(r.moved_out is null or r.moved_out > current_date)"


def _resident(row: tuple, today: date) -> Resident:
    (rid, name, gender, born, id_masked, phone_masked, registration, relation, household, house, building,
     building_name, entrance, floor, number, grid, tags, may_unmask) = row
    shown = tuple(sorted((Tag(t) for t in tags), key=_TAG_ORDER.__getitem__))
    return Resident(rid, name, Gender(gender), age_on(born, today), id_masked, phone_masked, Registration(registration),
                    Relation(relation), household, house, building, building_name, entrance, floor, number,
                    grid.strip(), shown, bool(may_unmask))


def _viewer_args(viewer: str) -> dict:
    return {"viewer": viewer, "restricted": sorted(RESTRICTED_TAGS), "see_restricted": Permission.RESTRICTED_TAGS.value,
            "unmask": Permission.UNMASK.value}


class LedgerReads(Reads):
    """The basic-data page's reads (see the module), on a pool of the dashboard's connections."""

    def __init__(self, city, dsn: str, sealer: privacy.Sealer | None) -> None:
        super().__init__(city, dsn)
        self.sealer = sealer          # None: no ledger key configured (searching by ID or phone says so)

    def _grids(self, scope: Scope) -> list[str] | None:
        """The scope's grid codes (None: the whole city, no filter): a name search then walks
        residents_grid_name per grid instead of every resident of that name."""
        return None if not scope.code else [g.code for g in self.city.grids if scope.covers(g.code)]

    def holds_any(self, viewer: str, permission: Permission, scope: Scope) -> bool:
        """ledger.grants.holds_any: whether a page offers a permission's control at all."""
        with self._cursor() as cur:
            return grants.holds_any(cur, viewer, permission, scope.code)

    # --- search -----------------------------------------------------------------------------------
    def search(self, scope: Scope, viewer: str, kind: SearchKind | str, text: str,
               limit: int = SHOWN_RESULTS) -> tuple[list[Resident], bool]:
        """The scope's current residents matching `text` as `kind` says, at most `limit`, and
        whether there were more. SearchError when the text cannot be searched as that kind."""
        try:
            kind = SearchKind(kind)
        except ValueError:
            raise SearchError(f"search by one of: {', '.join(k.value for k in SearchKind)}") from None
        text = (text or "").strip()
        if not text:
            raise SearchError("type something to search for")
        if len(text) > SEARCH_MAX:
            raise SearchError(f"a search has at most {SEARCH_MAX} characters")
        where, args = {SearchKind.NAME: self._by_name, SearchKind.ID_NUMBER: self._by_id_number,
                       SearchKind.PHONE: self._by_phone, SearchKind.ADDRESS: self._by_address}[kind](scope, text)
        # two steps: the matches' ids in order (an index's range, a sort of short keys in byte order),
        # then the columns, tags and grants of the few kept (a common surname city-wide matches 10⁵)
        rows = self.rows(f"""
            with found as (select r.resident_id, r.name {_RESIDENT_FROM} where {_CURRENT} and {where}
                            order by r.name collate "C", r.resident_id limit %(limit)s)
            select {_RESIDENT_COLUMNS} from found f join residents r using (resident_id)
                   left join households hh on hh.household_id = r.household_id
                   left join houses h on h.house_id = hh.house_id left join buildings b on b.building_id = h.building_id
             order by f.name collate "C", f.resident_id""", {**_viewer_args(viewer), **args, "limit": limit + 1})
        today = _today()
        return [_resident(row, today) for row in rows[:limit]], len(rows) > limit

    def _by_name(self, scope: Scope, text: str) -> tuple[str, dict]:
        grids = self._grids(scope)
        where = ('r.name collate "C" like %(prefix)s'          # migration 0033's indexes: a range, in order
                 + ("" if grids is None else " and r.grid_code = any(%(grids)s::bpchar[])"))
        return where, {"prefix": like_escape(text) + "%", "grids": grids}

    def _index(self, field: str, value: str) -> bytes:
        if self.sealer is None:
            raise SearchError("the ledger's key is not configured here (GCC_LEDGER_KEY): no exact search")
        return self.sealer.index(field, value)

    def _by_id_number(self, scope: Scope, text: str) -> tuple[str, dict]:
        value = privacy.normalize_id_number(text)
        if not _ID_FORM.fullmatch(value):
            raise SearchError("an ID number is 17 digits and a check digit or X (the whole number: the search is "
                              "exact)")
        return ("r.id_number_index = %(index)s and org_contains(%(scope)s, r.grid_code)",
                {"index": self._index(privacy.ID_NUMBER, value), "scope": scope.code})

    def _by_phone(self, scope: Scope, text: str) -> tuple[str, dict]:
        value = privacy.normalize_phone(text)
        if privacy.check_phone(value):
            raise SearchError("a phone is 5 to 20 digits (the whole number: the search is exact)")
        return ("r.phone_index = %(index)s and org_contains(%(scope)s, r.grid_code)",
                {"index": self._index(privacy.PHONE, value), "scope": scope.code})

    @staticmethod
    def _by_address(scope: Scope, text: str) -> tuple[str, dict]:
        """A building's name containing the text; or, the last word being a house number, a
        building's name containing the words before it and that house."""
        words = text.split()
        head = " ".join(words[:-1])
        return ("org_contains(%(scope)s, b.grid_code) and (b.name ilike %(whole)s"
                " or (%(head)s <> '' and b.name ilike %(head_like)s and h.number = %(number)s))",
                {"scope": scope.code, "whole": f"%{like_escape(text)}%", "head": head,
                 "head_like": f"%{like_escape(head)}%", "number": words[-1]})

    # --- buildings and houses ------------------------------------------------------------------------
    def buildings(self, scope: Scope, limit: int = 500) -> tuple[list[tuple[str, str, str]], bool]:
        """The scope's buildings that have houses in the ledger, by name: ([(id, name, grid)], more?)."""
        rows = self.rows("select b.building_id, b.name, b.grid_code from buildings b "
                         "where org_contains(%s, b.grid_code) "
                         "and exists (select 1 from houses h where h.building_id = b.building_id)"
                         " order by b.name, b.building_id limit %s", (scope.code, limit + 1))
        return [(b, n, g.strip()) for b, n, g in rows[:limit]], len(rows) > limit

    def building(self, scope: Scope, viewer: str, building_id: str) -> Building | None:
        """A building of the scope with its houses (entrance, floor from the top, number), each
        marked for who needs help first and (for a viewer who may see them) restricted tags."""
        found = self.rows("select building_id, name, grid_code, floors, entrances from buildings "
                          "where building_id = %s and org_contains(%s, grid_code)", (building_id, scope.code))
        if not found:
            return None
        houses = self.rows(f"""
            select h.house_id, h.entrance, h.floor, h.number, h.use, h.area_m2,
                   (select count(*) from households hh join residents r using (household_id)
                     where hh.house_id = h.house_id and {_CURRENT}),
                   exists (select 1 from households hh join residents r using (household_id)
                            join resident_tags t using (resident_id)
                            where hh.house_id = h.house_id and {_CURRENT} and t.tag = any(%(help)s)),
                   {_GRANTED.format(perm="%(see_restricted)s", grid="h.grid_code")} and
                   exists (select 1 from households hh join residents r using (household_id)
                            join resident_tags t using (resident_id)
                            where hh.house_id = h.house_id and {_CURRENT} and t.tag = any(%(restricted)s))
              from houses h where h.building_id = %(building)s
             order by h.entrance, h.floor desc, h.number""",
                           {**_viewer_args(viewer), "help": list(NEEDS_HELP_FIRST), "building": building_id})
        b_id, name, grid, floors, entrances = found[0]
        return Building(b_id, name, grid.strip(), floors, entrances, tuple(_house(row) for row in houses))

    def house(self, scope: Scope, viewer: str, house_id: int) -> HouseDetail | None:
        """A house of the scope, its households and their current residents (head first)."""
        found = self.rows("""
            select h.house_id, h.entrance, h.floor, h.number, h.use, h.area_m2, 0, false, false,
                   h.building_id, b.name, h.grid_code
              from houses h join buildings b using (building_id)
             where h.house_id = %s and org_contains(%s, h.grid_code)""", (house_id, scope.code))
        if not found:
            return None
        rows = self.rows(f"select {_RESIDENT_COLUMNS} {_RESIDENT_FROM} where {_CURRENT} and h.house_id = %(house)s",
                         {**_viewer_args(viewer), "house": house_id})
        heads = dict(self.rows("select household_id, head_id from households where house_id = %s order by household_id",
                               (house_id,)))
        today = _today()
        residents = [_resident(row, today) for row in rows]
        households = tuple(Household(hid, head, tuple(sorted(
            (r for r in residents if r.household_id == hid),
            key=lambda r, head=head: (r.resident_id != head, _RELATION_ORDER[r.relation], -(r.age or 0)))))
            for hid, head in heads.items())
        shown = _house(found[0][:9])
        helped = any(set(NEEDS_HELP_FIRST) & set(r.tags) for r in residents)
        restricted = any(RESTRICTED_TAGS & set(r.tags) for r in residents)
        shown = House(shown.house_id, shown.entrance, shown.floor, shown.number, shown.use, shown.area_m2,
                      len(residents), helped, restricted)
        return HouseDetail(shown, found[0][9], found[0][10], found[0][11].strip(), households)

    def resident(self, scope: Scope, viewer: str, resident_id: int) -> Resident | None:
        """One current resident of the scope, masked (the unmask form names whom it opens)."""
        rows = self.rows(f"select {_RESIDENT_COLUMNS} {_RESIDENT_FROM} where {_CURRENT} and r.resident_id = %(id)s "
                         "and org_contains(%(scope)s, r.grid_code)",
                         {**_viewer_args(viewer), "id": resident_id, "scope": scope.code})
        return _resident(rows[0], _today()) if rows else None


def _house(row: tuple) -> House:
    house_id, entrance, floor, number, use, area, residents, needs_help, restricted = row
    return House(house_id, entrance, floor, number, HouseUse(use), area, residents, bool(needs_help), bool(restricted))


def resident_grid(cur, resident_id: int) -> str | None:
    """The grid a current resident lives in (what an unmask is authorized and granted against)."""
    cur.execute(f"select r.grid_code from residents r where r.resident_id = %s and {_CURRENT}", (resident_id,))
    row = cur.fetchone()
    return row[0].strip() if row else None


def open_personal(cur, sealer: privacy.Sealer, resident_id: int) -> dict[str, str | None]:
    """A resident's ID number and phone in full ({privacy.ID_NUMBER: …, privacy.PHONE: …}, None
    where none is kept). Only for the audited unmask, after its grant is checked: the caller shows
    the values once and stores them nowhere."""
    cur.execute("select id_number_sealed, phone_sealed from residents where resident_id = %s", (resident_id,))
    row = cur.fetchone()
    if row is None:
        return {privacy.ID_NUMBER: None, privacy.PHONE: None}
    id_sealed, phone_sealed = row
    return {privacy.ID_NUMBER: sealer.open(privacy.ID_NUMBER, id_sealed) if id_sealed is not None else None,
            privacy.PHONE: sealer.open(privacy.PHONE, phone_sealed) if phone_sealed is not None else None}
