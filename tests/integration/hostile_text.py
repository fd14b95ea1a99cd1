"""What the hostile-text tests share (test_hostile_text_browser: the dashboard's pages;
test_hostile_text_handheld: the phone app's screens): the hostile strings, their planting in every
free-text field of the first street (in the database directly, as data from before the door's rule,
an import, or a bug elsewhere would be), and what a page is looked at for: no `gccXss()` run, no
planted element, each field's marker shown with its markup as characters."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import psycopg2

from cases import store
from cases.intake import INTAKE
from cases.limits import Urgency
from cases.machine import apply, open_case
from cases.model import Actor, ActorKind, Event, Refuse, Source, State
from database.audit import write_audit

from .screens import ensure_logins
from .test_cases_engine import seeded

CORE = "<img src=x onerror=gccXss()><script>gccXss()</script>javascript:gccXss()\u202e"


def hostile(field: str, long: bool = False) -> str:
    """What is planted in `field`: the markup, the RTL override, the field's marker (and 10,000
    characters when `long`)."""
    text = f"XSS[{field}]{CORE}"       # the marker first: a screen may cut a name past its length
    return text + "x" * (10_000 - len(text)) if long else text



def _owner(stack):
    return psycopg2.connect(stack.settings().pg_dsn)


def _first_in(street, table: str, key: str, cur) -> str:
    cur.execute(f"select {key} from {table} where grid_code like %s order by {key} limit 1", (street.code + "%",))
    return cur.fetchone()[0]


def _plant_names(cur, street, grid, member, building, undo: list) -> None:
    """The names the city is read with (the dashboard reads them at its start)."""
    for table, column, key, value in (
            ("members", "name", ("member_id", member.member_id), hostile("member name", True)),
            ("buildings", "name", ("building_id", building.building_id), hostile("building name")),
            ("grids", "name", ("code", grid.code), hostile("grid name")),
            ("org_units", "name", ("code", grid.community_code), hostile("community name")),
            ("org_units", "name", ("code", street.code), hostile("street name")),
            ("units", "name", ("unit_id", _first_in(street, "units", "unit_id", cur)), hostile("shop name")),
            ("organizations", "name", ("org_id", _first_in(street, "organizations", "org_id", cur)),
             hostile("organisation name"))):
        cur.execute(f"select {column} from {table} where {key[0]} = %s", (key[1],))
        undo.append((f"update {table} set {column} = %s where {key[0]} = %s", (cur.fetchone()[0], key[1])))
        cur.execute(f"update {table} set {column} = %s where {key[0]} = %s", (value, key[1]))
    cur.execute("insert into member_devices (device_id, member_id, kind, label) values ('ot-hostile', %s, "
                "'owntracks', %s) on conflict (device_id) do update set label = excluded.label, retired_at = null",
                (member.member_id, hostile("device label")))
    undo.append(("update member_devices set retired_at = now() where device_id = 'ot-hostile'", ()))


def _plant_rows(cur, street, grid, member, building, now: datetime, undo: list, report_id: str) -> None:
    """A user, a wall screen, a calendar day, an audit row, an announcement, a diary entry, a report."""
    cur.execute("insert into users (username, display_name, role, scope_code, password_hash, created_by) "
                "values ('t-hostile', %s, 'wall_viewer', '', 'x', 'tests')", (hostile("user name"),))
    undo.append(("delete from users where username = 't-hostile'", ()))
    cur.execute("insert into wall_tokens (name, scope_code, token_hash, created_by) values (%s, '', %s, 'tests') "
                "returning id", (hostile("wall screen name"), "hostile-" + now.isoformat()))
    undo.append(("update wall_tokens set revoked_at = now(), revoked_by = 'tests' where id = %s", cur.fetchone()))
    day = (now + timedelta(days=60)).date()
    cur.execute("select workday, name, source from work_calendar where day = %s", (day,))
    before = cur.fetchone()
    undo.append(("delete from work_calendar where day = %s", (day,)) if before is None else
                ("update work_calendar set workday = %s, name = %s, source = %s where day = %s", (*before, day)))
    cur.execute("insert into work_calendar (day, workday, name, source, updated_at, updated_by) values "
                "(%s, false, %s, 'admin', %s, 'tests') on conflict (day) do update set workday = false, "
                "name = excluded.name, source = 'admin'", (day, hostile("calendar day name"), now))
    write_audit(cur, "t-admin", ["admin"], "case.refuse", "case:hostile", street.code, "refused",
                hostile("audit reason", True))                  # append-only: it stays, as any audit row
    cur.execute("insert into announcements (org_code, org_name, title, body, sent_by, sender, created_at, "
                "expires_at, recipients) values (%s, %s, %s, %s, 't-admin', %s, %s, %s, 0) returning id",
                (street.code, hostile("street name"), "XSS[announcement title]<img src=x onerror=gccXss()>",
                 hostile("announcement text")[:2000], hostile("user name"), now, now + timedelta(days=7)))
    undo.append(("delete from announcements where id = %s", cur.fetchone()))
    cur.execute("insert into diary_entries (time, entry_id, terminal_id, member_id, grid_code, category, text) "
                "values (%s, 'hostile-1', %s, %s, %s, 'livelihood', %s)",
                (now - timedelta(minutes=5), member.terminal_id, member.member_id, grid.code, hostile("diary entry")))
    undo.append(("delete from diary_entries where entry_id = 'hostile-1'", ()))
    cur.execute("insert into incident_reports (time, report_id, terminal_id, member_id, category, severity, lat, lon, "
                "address, description, grid_code) values (%s, %s, %s, %s, 'exposed_garbage', 2, %s, %s, "
                "%s, %s, %s)", (now - timedelta(minutes=3), report_id, member.terminal_id, member.member_id,
                                building.lat, building.lon, hostile("report address"), hostile("report text", True),
                                grid.code))
    cur.execute("delete from case_inbox where kind = 'report' and key = %s",   # its case is planted below
                (f"{member.terminal_id}/{report_id}",))
    undo.append(("delete from incident_reports where report_id = %s", (report_id,)))


def _plant_case(cur, grid, member, building, now: datetime, report_id: str) -> str:
    """A registered case of the report: its title, place, a member's refusal reason and note."""
    rules = store.load_rules(cur)
    case_id = store.next_case_id(cur, now)
    outcome = open_case(case_id, "exposed_garbage", Urgency.URGENT, Source.REPORT, grid.code, grid.code, INTAKE,
                        now - timedelta(minutes=2), rules, lat=building.lat, lon=building.lon)
    case = replace(outcome.case, title=hostile("case title", True), place=hostile("case place"),
                   state=State.REGISTERED)
    store.insert(cur, case, rules, source_key=f"report:{member.terminal_id}/{report_id}")
    who = Actor(ActorKind.TERMINAL, member.terminal_id, frozenset({member.role.value}), grid.code)
    store.add_events(cur, [*outcome.events, Event(case_id, now - timedelta(minutes=1), "reject", who,
                                                  State.DISPATCHED, State.REGISTERED, hostile("refusal reason"),
                                                  {"note": hostile("case note", True)})])
    cur.execute("insert into case_sources (kind, key, case_id, time, linked) values ('report', %s, %s, %s, 'opened')",
                (f"{member.terminal_id}/{report_id}", case_id, now))
    return case_id


def _refuse_case(cur, case_id: str) -> None:
    """The planted case ends as any case may (its events are append-only): refused, with an event."""
    rules = store.load_rules(cur)
    dispatcher = Actor(ActorKind.USER, "t-dispatcher", frozenset({"dispatcher"}), "")
    outcome = apply(store.load(cur, case_id), Refuse("the hostile-text test is over"), dispatcher,
                    datetime.now(timezone.utc), rules)
    store.save(cur, outcome.case, rules)
    store.add_events(cur, outcome.events)



@dataclass
class Planted:
    """Where the hostile text went: the case planted (registered), the street, grid, member and
    building whose names were changed; `undo`: further statements (as the owner) a test adds, run
    (last first) at the end."""
    case_id: str
    street: object
    grid: object
    member: object
    building: object
    now: datetime
    undo: list[tuple[str, tuple]] = field(default_factory=list)


@contextmanager
def planted_city(stack, city) -> Iterator[Planted]:
    """Hostile text in every free-text field, in the first street; put back (or ended) afterwards."""
    cases_settings = seeded(stack)
    ensure_logins(stack.settings().pg_dsn)
    street = city.streets[0]
    grid = next(g for g in city.grids if g.code.startswith(street.code))
    member = next(m for m in city.members if m.grid_code == grid.code)
    building = next(b for b in city.buildings if b.grid_code == grid.code)
    now = datetime.now(timezone.utc)
    report_id = f"hostile-{uuid.uuid4().hex[:8]}"     # its own each time: a planting again in the session
    undo: list[tuple[str, tuple]] = []
    planted, case_id = None, None
    try:                                              # what was planted is put back, even if a step fails
        with closing(_owner(stack)) as conn, conn, conn.cursor() as cur:
            _plant_names(cur, street, grid, member, building, undo)
            _plant_rows(cur, street, grid, member, building, now, undo, report_id)
        with closing(psycopg2.connect(cases_settings.pg_dsn)) as conn, conn, conn.cursor() as cur:
            case_id = _plant_case(cur, grid, member, building, now, report_id)
        planted = Planted(case_id, street, grid, member, building, now)
        yield planted
    finally:
        if case_id is not None:
            with closing(psycopg2.connect(cases_settings.pg_dsn)) as conn, conn, conn.cursor() as cur:
                _refuse_case(cur, case_id)
        with closing(_owner(stack)) as conn, conn, conn.cursor() as cur:
            for statement, args in (planted.undo[::-1] if planted else []) + undo:
                cur.execute(statement, args)


# counts calls of gccXss() (a planted string that ran as markup calls it)
COUNT_XSS = """
  window.gccXssRuns = 0;
  window.gccXss = () => { window.gccXssRuns += 1; };
"""
PLANTED_ELEMENTS = """() => document.querySelectorAll('img[src="x"]').length +
  [...document.querySelectorAll("script")].filter(s => s.textContent.includes("gccXss")).length +
  [...document.querySelectorAll("a[href]")].filter(a => a.getAttribute("href").includes("gccXss")).length"""


def marked(text: str, fields, where: str, seen: dict[str, set[str]]) -> list[str]:
    """Which planted fields `text` (a page's text) shows, noted in `seen`; a problem for each shown
    without its markup as characters after its marker."""
    problems = []
    for name in fields:
        if f"XSS[{name}]" in text:
            if f"XSS[{name}]<img src=x onerror=gccXss()>" not in text:
                problems.append(f"{where}: {name} shown without its markup as text")
            seen.setdefault(name, set()).add(where)
    return problems
