"""The members' dispatch status against the real stack: the duty roster takes a member out of the
candidates (off duty, counted), and the status history records each change once, with its cause
(located → available, offered → requested, the terminal offline → offline, off the roster → off
duty), nothing while nothing changes, and nothing again after a restart of the recorder."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import psycopg2
import pytest

from cases.model import Dispatch, Register
from core.roles import Role, UserRole
from dashboard.authz import Identity
from dashboard.case_actions import CaseAction, CaseRules
from dashboard.commands import Commands
from dispatch.candidates import Settings, find, first_available
from dispatch.history import StatusRecorder
from dispatch.roster import ALL_DAY, RosterCache, city_day
from ingest.live import LiveState
from ingest.model import Enriched
from telemetry.messages import Fix, TerminalStatus

from .ingest_helpers import owner_rows
from .test_case_offers import _case_at
from .test_cases_engine import seeded

pytestmark = pytest.mark.slow
METRE = 1 / 111_320
DISPATCHER = Identity("disp-status", frozenset({UserRole.DISPATCHER}), "")


@pytest.fixture(scope="module")
def cases_settings(stack, city):
    return seeded(stack)


def _located(r, grid, members, lon, lat) -> None:
    now = datetime.now(timezone.utc)
    LiveState(r).apply([Enriched(Fix(terminal_id=m.terminal_id, time=now, lat=lat + 30 * i * METRE, lon=lon,
                                     source="gcc"), grid.code, member_id=m.member_id, home_grid_code=m.grid_code,
                                 received_at=now) for i, m in enumerate(members, 1)])


def _history(stack, terminal_id: str, since: datetime) -> list[tuple[str, str]]:
    return owner_rows(stack, "select status, cause from member_status where terminal_id = %s and time >= %s "
                             "order by time", terminal_id, since)


def test_the_roster_and_the_work_and_the_terminal_make_the_status_and_each_change_is_recorded_once(
        stack, city, cases_settings, redis_client):
    grid = city.grids[131]
    handlers = [m for m in city.members if m.grid_code == grid.code and m.role is not Role.GRID_SUPERVISOR]
    point = grid.boundary.representative_point()
    _located(redis_client, grid, handlers, point.x, point.y)
    recorder = StatusRecorder(cases_settings.pg_dsn, redis_client, city)
    conn = psycopg2.connect(cases_settings.pg_dsn)
    start = datetime.now(timezone.utc)
    today = city_day(start)
    try:
        recorder.once(conn)
        assert [_history(stack, m.terminal_id, start) for m in handlers] == [[("available", "free, located")]] * 3
        assert recorder.once(conn) == []                                      # nothing changed: nothing written

        # the roster: everyone on duty today but the third handler
        owner_rows(stack, "insert into duty_roster (day, terminal_id, starts, ends, note) select %s, terminal_id, "
                          "%s, %s, 'test roster' from members where terminal_id <> %s returning 1",
                   today, *ALL_DAY, handlers[2].terminal_id)
        changed = dict(StatusRecorder(cases_settings.pg_dsn, redis_client, city).once(conn))   # a restart, too
        assert set(changed) == {handlers[2].terminal_id}
        assert _history(stack, handlers[2].terminal_id, start)[-1] == ("off_duty", "not on duty now (roster)")
        search = find(redis_client, city, "water_leak", grid.code, point.y, point.x, lambda t: [], time.time(),
                      Settings(radius_m=300), on_duty=lambda t: t != handlers[2].terminal_id)
        assert handlers[2].terminal_id not in {c.terminal_id for c in search.candidates}
        assert search.left_out.get("off_duty", 0) >= 1

        # offered a case: requested; the engine's pick (with the roster) never offers the one off duty
        settings = stack.app_settings("dashboard")
        ctx = Commands(city, None, settings.pg_dsn, producer="test-status")
        rules = CaseRules(ctx)
        case_id = _case_at(stack, cases_settings, grid, point.y, point.x)
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Register(), rules)).ok
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Dispatch(handlers[0].terminal_id, grid.code), rules)).ok
        with conn, conn.cursor() as cur:
            case = ctx.case(case_id)
            picked = first_available(redis_client, city, cur, case, frozenset({handlers[0].terminal_id}), time.time(),
                                     Settings(radius_m=300), RosterCache())
        assert picked is not None and picked.terminal_id == handlers[1].terminal_id
        # the second handler's terminal goes offline
        now = datetime.now(timezone.utc)
        LiveState(redis_client).apply([Enriched(TerminalStatus(terminal_id=handlers[1].terminal_id, time=now,
                                                               state="offline", source="gcc"), grid.code,
                                                member_id=handlers[1].member_id, home_grid_code=grid.code,
                                                received_at=now)])
        changed = dict(recorder.once(conn))
        assert {t: s.status.value for t, s in changed.items()} == {handlers[0].terminal_id: "requested",
                                                                    handlers[1].terminal_id: "offline"}
        assert _history(stack, handlers[0].terminal_id, start) == [("available", "free, located"),
                                                            ("requested", "1 open case")]
        assert _history(stack, handlers[1].terminal_id, start)[-1][0] == "offline"
    finally:
        owner_rows(stack, "delete from duty_roster where day = %s and note = 'test roster' returning 1", today)
        conn.close()
