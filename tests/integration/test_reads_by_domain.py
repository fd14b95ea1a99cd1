"""The domains' reads stand on their own, without the dashboard (cases.reads, kpis.reads,
registry.reads on database.reads' pool), and a scope's reads see its own org units' rows and none of
the next street's: containment is org_contains in every one of them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from cases.model import State
from cases.reads import CaseFilter, CaseReads
from core.orgcodes import Scope, contains
from kpis.reads import KpiReads
from registry.reads import RegistryReads


class Reads(CaseReads, KpiReads, RegistryReads):
    """The three domains' reads on one pool, as dashboard.queries puts them together."""


@pytest.fixture
def seeded(stack, city):
    """Three cases: an open one past its deadline and a closed one in the first street, an open one
    past its deadline in the second."""
    first, second = city.streets[0], city.streets[1]
    grid_a = next(g.code for g in city.grids if contains(first.code, g.code))
    grid_b = next(g.code for g in city.grids if contains(second.code, g.code))
    now = datetime.now(timezone.utc)
    rows = [("RD-A1", grid_a, State.REGISTERED), ("RD-A2", grid_a, State.CLOSED), ("RD-B1", grid_b, State.REGISTERED)]
    conn = psycopg2.connect(stack.settings().pg_dsn)
    with conn, conn.cursor() as cur:
        for case_id, grid, state in rows:
            cur.execute("insert into cases (case_id, category, urgency, source, grid_code, org_code, state, "
                        "opened_at, limits_version, stage_seq, deadline) values (%s, 'noise', 'normal', 'hotline', "
                        "%s, %s, %s, %s, 1, 1, %s)", (case_id, grid, grid, state.value, now - timedelta(hours=2),
                                                     now - timedelta(hours=1)))
    reads = Reads(city, stack.settings().pg_dsn)
    yield reads, Scope(first.code, first.name), Scope(second.code, second.name)
    reads.db.closeall()
    with conn, conn.cursor() as cur:
        cur.execute("delete from cases where case_id like 'RD-%%'")
    conn.close()


def _ids(cases) -> set[str]:
    return {c.case_id for c in cases if c.case_id.startswith("RD-")}


def test_a_streets_case_list_holds_its_own_cases_and_none_of_the_next_streets(seeded):
    reads, first, second = seeded
    every = CaseFilter(status="all", text="RD-")
    assert _ids(reads.cases(first, every, 50)[0]) == {"RD-A1", "RD-A2"}
    assert _ids(reads.cases(second, every, 50)[0]) == {"RD-B1"}
    assert _ids(reads.cases(Scope("", "city"), every, 50)[0]) == {"RD-A1", "RD-A2", "RD-B1"}
    assert _ids(reads.cases(first, CaseFilter(status="open", text="RD-"), 50)[0]) == {"RD-A1"}
    assert _ids(reads.cases(first, CaseFilter(status="finished", text="RD-"), 50)[0]) == {"RD-A2"}
    assert {c.case_id for c in reads.open_cases(second) if c.case_id.startswith("RD-")} == {"RD-B1"}


def test_overdue_now_is_the_scopes_open_cases_past_their_deadline(seeded):
    reads, first, second = seeded
    assert _ids(reads.overdue_now(first, 500)[0]) == {"RD-A1"}          # not the closed one, not B's
    assert _ids(reads.overdue_now(second, 500)[0]) == {"RD-B1"}


def test_the_registrys_member_list_is_the_scopes_members(seeded, city):
    reads, first, _ = seeded
    members, total = reads.registry_members(first, "", 10_000)      # other tests may add members: no exact count
    assert total == len(members) > 0
    assert all(contains(first.code, grid) for _, _, _, grid, _, _ in members)
    assert {m.member_id for m in city.members if contains(first.code, m.grid_code)} & {m[0] for m in members}
