"""What a phone reads, against the real database as the device-facing server's role (the ingest's):
each answer holds the caller's own work and its grid's and nothing else — another member's tasks
are not listed, a case of another grid is refused (one offered to me is not), verification lists
my grid's handled cases but not those I handled, the announcements are my grid's and above,
coverage is what the patrol maintainer folded for my grid today."""
from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import orjson
import psycopg2
import pytest

from cases import store
from cases.intake import INTAKE
from cases.limits import Urgency
from cases.machine import open_case
from cases.model import Source, State
from core import freetext
from core.city import CITY_TZ
from core.orgcodes import Level, ancestor, ancestors
from handheld.caller import Caller
from handheld.reads import HandheldReads

from ..support import EndpointRequest
from .ingest_helpers import owner_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reads(stack, city):
    settings = stack.app_settings("cases")
    conn = psycopg2.connect(settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            store.seed(cur, [2026, 2027], "tests")
    finally:
        conn.close()
    handheld = HandheldReads(city, stack.app_settings("ingest").pg_dsn)      # the device-facing server's role
    yield handheld
    handheld.db.closeall()


@pytest.fixture(scope="module")
def people(city):
    """Me, another member of my grid, and a member of a grid of another community."""
    grid = city.grids[40]
    me, mate = [m for m in city.members if m.grid_code == grid.code][:2]
    stranger = next(m for m in city.members
                    if ancestor(m.grid_code, Level.COMMUNITY) != ancestor(grid.code, Level.COMMUNITY))
    return me, mate, stranger


def caller(member) -> Caller:
    return Caller(f"hh-{member.member_id}", member.member_id, member.terminal_id, member.grid_code, member.role,
                  member.name)


def ask(reads, respond, member, path: str = "/handheld/api/v1/x"):
    reply = respond(caller(member), EndpointRequest("GET", path))
    return reply.status, orjson.loads(reply.body)


def a_case(stack, member, state: State, handler: str | None, title: str) -> str:
    """A case of the member's grid in `state`, handled by `handler`."""
    conn = psycopg2.connect(stack.app_settings("cases").pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            rules = store.load_rules(cur)
            now = datetime.now(timezone.utc)
            case_id = store.next_case_id(cur, now)
            outcome = open_case(case_id, "exposed_garbage", Urgency.NORMAL, Source.REPORT, member.grid_code,
                                member.grid_code, INTAKE, now, rules, title=title, place="Gate 2")
            store.insert(cur, replace(outcome.case, state=state, handler=handler,
                                      deadline=now + timedelta(hours=2)), rules)
    finally:
        conn.close()
    return case_id


def offer(stack, case_id: str, terminal_id: str, minutes: float = 3) -> None:
    owner_rows(stack, "insert into case_offers (case_id, stage_seq, terminal_id, offered_by, offered_at, expires_at) "
                      "values (%s, 1, %s, 'tests', now(), now() + %s * interval '1 minute') returning id",
               case_id, terminal_id, minutes)


def ids(cases: list[dict]) -> set[str]:
    return {c["case_id"] for c in cases}


def test_my_tasks_list_my_offers_and_my_open_cases_and_no_one_elses(stack, city, reads, people):
    me, mate, stranger = people
    offered = a_case(stack, me, State.DISPATCHED, me.terminal_id, "offered to me")
    offer(stack, offered, me.terminal_id)
    expired = a_case(stack, me, State.DISPATCHED, me.terminal_id, "an offer run out")
    offer(stack, expired, me.terminal_id, minutes=-1)
    handling = a_case(stack, me, State.HANDLING, me.terminal_id, "mine, on site")
    theirs = a_case(stack, mate, State.HANDLING, mate.terminal_id, "my mate's")
    their_offer = a_case(stack, stranger, State.DISPATCHED, stranger.terminal_id, "offered to a stranger")
    offer(stack, their_offer, stranger.terminal_id)
    closed = a_case(stack, me, State.CLOSED, me.terminal_id, "mine, closed")

    status, tasks = ask(reads, reads.tasks, me)
    assert status == 200
    assert offered in ids(tasks["offers"]) and not ids(tasks["offers"]) & {expired, their_offer, theirs}
    [mine] = [c for c in tasks["offers"] if c["case_id"] == offered]
    assert mine["offered_at"] and mine["deadline"] and mine["state_label"] == "已派遣 dispatched"
    assert handling in ids(tasks["open"]) and not ids(tasks["open"]) & {theirs, their_offer, closed, offered}
    _, stranger_tasks = ask(reads, reads.tasks, stranger)
    assert their_offer in ids(stranger_tasks["offers"]) and offered not in ids(stranger_tasks["offers"])


def test_a_case_of_another_grid_is_refused_unless_it_was_offered_to_me(stack, city, reads, people):
    me, mate, stranger = people
    of_my_grid = a_case(stack, mate, State.HANDLING, mate.terminal_id, "my grid's")
    elsewhere = a_case(stack, stranger, State.HANDLING, stranger.terminal_id, "another grid's")
    offered_elsewhere = a_case(stack, stranger, State.DISPATCHED, me.terminal_id, "offered to me nearby")
    offer(stack, offered_elsewhere, me.terminal_id)

    status, case = ask(reads, reads.case, me, f"/handheld/api/v1/cases/{of_my_grid}")
    assert (status, case["case_id"], case["title"], case["handler_is_me"]) == (200, of_my_grid, "my grid's", False)
    assert {"photos", "history", "reports"} <= set(case)
    assert ask(reads, reads.case, me, f"/handheld/api/v1/cases/{elsewhere}") == (403, {"error": "outside_grid"})
    assert ask(reads, reads.case, me, f"/handheld/api/v1/cases/{offered_elsewhere}")[0] == 200
    assert ask(reads, reads.case, stranger, f"/handheld/api/v1/cases/{of_my_grid}") == (403, {"error": "outside_grid"})
    assert ask(reads, reads.case, me, "/handheld/api/v1/cases/C-nothing-here") == (404, {"error": "not_found"})
    assert ask(reads, reads.case, me, "/handheld/api/v1/cases/a%27;drop") == (400, {"error": "bad_case_id"})


def test_verify_lists_my_grids_handled_cases_but_not_mine(stack, city, reads, people):
    me, mate, stranger = people
    by_mate = a_case(stack, mate, State.HANDLED, mate.terminal_id, "handled by my mate")
    by_me = a_case(stack, me, State.HANDLED, me.terminal_id, "handled by me")
    elsewhere = a_case(stack, stranger, State.HANDLED, stranger.terminal_id, "handled in another grid")
    still_handling = a_case(stack, mate, State.HANDLING, mate.terminal_id, "not handled yet")
    status, listed = ask(reads, reads.verify, me)
    assert status == 200
    assert by_mate in ids(listed["cases"])
    assert not ids(listed["cases"]) & {by_me, elsewhere, still_handling}
    assert by_me in ids(ask(reads, reads.verify, mate)[1]["cases"])


def _announce(stack, org_code: str, title: str, days: float = 1) -> int:
    now = datetime.now(timezone.utc)
    [(announcement_id,)] = owner_rows(
        stack, "insert into announcements (org_code, org_name, title, body, sent_by, sender, created_at, expires_at, "
               "recipients) values (%s, 'unit', %s, 'body', 'tests', 'Tests', %s, %s, 0) returning id",
        org_code, title, now - timedelta(days=2), now + timedelta(days=days - 2))
    return announcement_id


def test_announcements_are_my_grids_and_above_not_expired_with_my_read_receipt(stack, city, reads, people):
    me, _, stranger = people
    tag = secrets.token_hex(3)
    to_street = _announce(stack, ancestor(me.grid_code, Level.STREET), f"street {tag}", days=3)
    to_grid = _announce(stack, me.grid_code, f"grid {tag}", days=3)
    expired = _announce(stack, me.grid_code, f"expired {tag}", days=1)
    elsewhere = _announce(stack, stranger.grid_code, f"elsewhere {tag}", days=3)
    owner_rows(stack, "insert into announcement_reads (time, announcement_id, terminal_id) values (now(), %s, %s) "
                      "returning 1", to_grid, me.terminal_id)
    status, doc = ask(reads, reads.announcements, me)
    seen = {a["announcement_id"]: a for a in doc["announcements"]}
    assert status == 200 and {to_street, to_grid} <= set(seen) and not {expired, elsewhere} & set(seen)
    assert (seen[to_grid]["read"], seen[to_street]["read"]) == (True, False)
    assert all(a["org_code"] in ancestors(me.grid_code) for a in doc["announcements"])


def test_coverage_is_my_grids_today_as_the_patrol_maintainer_folded_it(stack, city, reads, people):
    me, mate, stranger = people
    today = datetime.now(CITY_TZ).date()
    for member, cells, walked in ((me, ["a", "b"], 812.5), (mate, ["b", "c"], 40.0), (stranger, ["x", "y", "z"], 9.0)):
        owner_rows(stack, "insert into patrol_daily (day, terminal_id, grid_code, fixes, fixes_in_grid, cells, "
                          "cells_total, distance_m, seconds_in_grid) values (%s, %s, %s, 10, 10, %s, 10, %s, 60) "
                          "on conflict (day, terminal_id) do update set cells = excluded.cells, "
                          "cells_total = excluded.cells_total, distance_m = excluded.distance_m returning 1",
                   today, member.terminal_id, member.grid_code, cells, walked)
    status, coverage = ask(reads, reads.coverage, me)
    assert status == 200
    assert (coverage["covered_pct"], coverage["my_covered_pct"], coverage["walked_m"]) == (30.0, 20.0, 812.5)
    assert coverage["since"].startswith(today.isoformat())


def test_me_map_and_catalogue(stack, city, reads, people):
    me, _, _ = people
    _, doc = ask(reads, reads.me, me)
    assert (doc["member_id"], doc["terminal_id"], doc["grid_code"]) == (me.member_id, me.terminal_id, me.grid_code)
    assert [o["code"] for o in doc["org_path"]] == ancestors(me.grid_code)
    assert [o["level"] for o in doc["org_path"]] == ["district", "street", "community", "grid"]
    _, drawn = ask(reads, reads.map, me)
    assert drawn["grid"]["properties"]["id"] == me.grid_code and drawn["grid"]["geometry"]["type"] == "Polygon"
    assert {b["properties"]["id"] for b in drawn["buildings"]["features"]} == \
        {b.building_id for b in city.buildings if b.grid_code == me.grid_code}
    (south, west), (north, east) = drawn["bounds"]
    assert south < north and west < east
    _, catalogue = ask(reads, reads.catalogue, me)
    assert {"key": "livelihood", "label_zh": "民生", "label_en": "livelihood"} in catalogue["diary_categories"]
    assert any(c["key"] == "manhole_cover" and c["label_zh"] == "井盖缺损" for c in catalogue["incident_categories"])
    routes = {(r.method, r.path) for r in reads.routes(lambda respond: respond)}
    assert ("GET", "/handheld/api/v1/cases/") in routes and len(routes) == 8


def test_text_stored_past_the_door_is_cut_as_the_screens_cut_it(stack, city, reads, people):
    """A title written before the limit (or past the door) must not make a task card 40,000 px tall."""
    me, _, _ = people
    case_id = a_case(stack, me, State.DISPATCHED, me.terminal_id, "a title")
    owner_rows(stack, "update cases set title = repeat('井', 10000) where case_id = %s returning 1", case_id)
    status, doc = ask(reads, reads.case, me, f"/handheld/api/v1/cases/{case_id}")
    assert status == 200
    assert len(doc["title"]) == freetext.LINE.max_length and doc["title"].endswith("…")
