"""A member's dispatch status and the candidates' ranking, without servers: status from the live
state and the member's open cases; the rank by availability, role, grid, workload and distance on
a crafted set."""
from __future__ import annotations

from datetime import date, datetime, time, timezone

from core.roles import Role
from dispatch.candidates import ROLES_FOR, Candidate, Settings, _explained, eta_s, rank
from dispatch.roster import ALL_DAY, RosterDay
from dispatch.status import DispatchStatus, Status, status_of
from simulator.citygen import SCALES, generate
from simulator.roster import demo_rows
from telemetry.live import TerminalLive

NOW = 1_800_000_000.0


def _live(state: str = "online", fix_age: float = 10.0, grid: str | None = "350102001001001") -> TerminalLive:
    return TerminalLive("T1", "M1", grid, 119.3, 26.08, NOW - fix_age, state, NOW - 600)


def test_status_follows_the_terminal_then_the_work_then_the_fix():
    assert status_of(None, [], NOW).status is DispatchStatus.OFFLINE
    assert status_of(_live("offline"), [], NOW).status is DispatchStatus.OFFLINE
    assert status_of(_live(), ["handling", "dispatched"], NOW).status is DispatchStatus.ON_SCENE
    assert status_of(_live(), ["accepted"], NOW).status is DispatchStatus.EN_ROUTE
    requested = status_of(_live(), ["dispatched"], NOW)
    assert requested.status is DispatchStatus.REQUESTED and requested.workload == 1
    stale = status_of(_live(fix_age=300), [], NOW)
    assert stale.status is DispatchStatus.UNAVAILABLE and "5 min" in stale.cause
    assert status_of(_live(), ["handled", "closed"], NOW) == Status(DispatchStatus.AVAILABLE, "free, located", 0)
    assert status_of(_live(grid=None), [], NOW) == Status(DispatchStatus.AVAILABLE, "free, out of area", 0)


def _candidate(name, *, available=True, fits=True, tier=0, workload=0, distance=100.0) -> Candidate:
    status = Status(DispatchStatus.AVAILABLE if available else DispatchStatus.EN_ROUTE, "", workload)
    return Candidate(f"T-{name}", name, Role.GRID_ADMINISTRATOR, "350102001001001", 119.3, 26.08, distance,
                     eta_s(distance, Settings()), status, tier, fits, "")


def test_the_rank_puts_available_before_busy_then_role_then_grid_then_workload_then_distance():
    crafted = [
        _candidate("busy-near", available=False, distance=10),
        _candidate("misfit-same-grid", fits=False, distance=20),
        _candidate("other-community", tier=2, distance=30),
        _candidate("community", tier=1, distance=900),
        _candidate("loaded", workload=2, distance=40),
        _candidate("far-same-grid", distance=800),
        _candidate("near-same-grid", distance=300),
    ]
    assert [c.name for c in rank(crafted)] == ["near-same-grid", "far-same-grid", "loaded", "community",
                                               "other-community", "misfit-same-grid", "busy-near"]


def test_every_candidate_says_why_it_ranks_where_it_does():
    explained = _explained(_candidate("x", fits=False, tier=1, workload=1, distance=420), 3)
    assert explained.reason.startswith("#3: ") and "not the usual role" in explained.reason
    assert "same community" in explained.reason and "1 open" in explained.reason and "420 m" in explained.reason


def test_the_eta_is_straight_line_times_the_detour_at_walking_speed():
    assert eta_s(120, Settings(detour=1.5, walk_mps=1.0)) == 180
    assert ROLES_FOR["noise"][0] is Role.GRID_POLICE_OFFICER
    assert ROLES_FOR["exposed_garbage"][0] is Role.GRID_ADMINISTRATOR


def test_off_duty_by_the_roster_unless_work_is_in_hand():
    assert status_of(_live(), [], NOW, on_duty=False).status is DispatchStatus.OFF_DUTY
    assert status_of(None, [], NOW, on_duty=False).status is DispatchStatus.OFF_DUTY        # rather than "offline"
    assert status_of(_live(), ["handling"], NOW, on_duty=False).status is DispatchStatus.ON_SCENE   # finishing it


def test_a_roster_day_puts_members_on_duty_within_their_shift_and_the_others_off():
    day = date(2026, 12, 2)
    roster = RosterDay(day, {"T1": (time(8, 0), time(20, 0)), "T2": ALL_DAY})
    morning = datetime(2026, 12, 2, 1, 0, tzinfo=timezone.utc)           # 09:00 in Fuzhou
    night = datetime(2026, 12, 2, 13, 30, tzinfo=timezone.utc)           # 21:30 in Fuzhou
    assert roster.on_duty("T1", morning) and not roster.on_duty("T1", night)
    assert roster.on_duty("T2", night) and not roster.on_duty("T3", morning)   # not on the roster: off
    assert RosterDay(day, None).on_duty("T3", night) and not RosterDay(day, None).loaded   # no roster: everyone


def test_the_demo_roster_rests_each_handler_one_day_a_week_never_two_of_a_grid_on_one_day():
    city = generate(SCALES["demo"], seed=7)
    rows = demo_rows(city, date(2026, 11, 30), 7)                         # a Monday, and the week
    on = {(d, t) for d, t, *_ in rows}
    handlers = [m for m in city.members if m.role is not Role.GRID_SUPERVISOR]
    rests = {m.terminal_id: [d for d in {d for d, _ in on} if (d, m.terminal_id) not in on] for m in handlers}
    assert all(len(days) == 1 for days in rests.values())
    for grid in city.grids[:20]:
        days = [rests[m.terminal_id][0] for m in handlers if m.grid_code == grid.code]
        assert len(days) == len(set(days)) == 3
    supervisors = [m for m in city.members if m.role is Role.GRID_SUPERVISOR]
    assert all(sum((d, m.terminal_id) in on for d in {d for d, _ in on}) == 7 for m in supervisors)

