"""Simulated terminals play their members' part in cases: they answer the cases engine's notices
(telemetry/notices.py) with case updates that the real decoder reads, timed against the notices'
deadlines, one job at a time."""
from __future__ import annotations

import random
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import orjson
import paho.mqtt.client as mqtt
import pytest

from core.roles import Role
from simulator.behaviour import metres_to_degrees
from simulator.cases import BUSY_WITH_CASE, BUSY_WITH_TASK
from simulator.citygen import SCALES, generate
from simulator.devices import SimConfig, TerminalSim
from simulator.run import Simulator
from telemetry.decoders import decode
from telemetry.messages import CaseUpdate
from telemetry.notices import CaseNotice, NoticeKind
from telemetry.topics import CASE, NOTICE, TASK, terminal_topic

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)          # a Tuesday, 10:00 in Fuzhou
ACCEPT_LIMIT = timedelta(minutes=3)             # 30 min at the demo's scale (x 1/10)
HANDLE_LIMIT = timedelta(minutes=45)            # exposed garbage: 1 working day (7.5 h), x 1/10
PHOTO_REF = re.compile(r"^photos/\d{4}/\d{2}/\d{2}/[^/\s]+\.jpg$")
CALM = SimConfig(case_reject_fraction=0, case_silent_fraction=0, case_extension_fraction=0, case_late_fraction=0,
                 verify_fail_fraction=0, task_reject_fraction=0, incidents_per_member_hour=0, fix_interval_s=60)


@pytest.fixture(scope="module")
def city():
    return generate(SCALES["demo"], seed=7)


@pytest.fixture(scope="module")
def grid(city):
    return city.grids[0]


def _member(city, grid, role: Role):
    return next(m for m in city.members if m.grid_code == grid.code and m.role is role)


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    d_lon, d_lat = metres_to_degrees(a[1], 1.0, 1.0)
    return (((a[0] - b[0]) / d_lon) ** 2 + ((a[1] - b[1]) / d_lat) ** 2) ** 0.5


class Terminal:
    """A TerminalSim whose `send` appends to a list, and that remembers where its member stood."""

    def __init__(self, city, grid, role: Role = Role.GRID_ADMINISTRATOR, cfg: SimConfig = CALM, seed: int = 1,
                 handle_limit: timedelta | None = HANDLE_LIMIT):
        self.handle_limit = handle_limit      # as the engine: an `accepted` notice answers an accept (None: none)
        self.sent: list[tuple[str, bytes, tuple[float, float]]] = []
        self.sim = TerminalSim(_member(city, grid, role), grid, cfg, random.Random(seed), self._send, [])
        self.now = T0
        self.next_id = 1

    def _send(self, topic: str, payload: bytes) -> None:
        self.sent.append((topic, payload, (self.sim.patrol.lon, self.sim.patrol.lat)))

    def notice(self, kind: NoticeKind, case_id: str = "C20261124-000001", *, deadline: timedelta | None = ACCEPT_LIMIT,
               state: str = "dispatched", place: tuple[float, float] | None = None, notice_id: int | None = None,
               reason: str | None = None) -> CaseNotice:
        """Deliver a notice made by the contract's own type (a fresh id unless one is given)."""
        if notice_id is None:
            notice_id, self.next_id = self.next_id, self.next_id + 1
        lon, lat = place if place else (None, None)
        notice = CaseNotice(notice_id, self.sim.terminal_id, self.now, kind, case_id, state, "exposed_garbage",
                            "normal", "Exposed garbage at the gate", "Gate 2", lat, lon,
                            self.now + deadline if deadline is not None else None, reason)
        self.sim.on_downlink(terminal_topic(self.sim.terminal_id, NOTICE), notice.payload(), self.now)
        return notice

    def near(self, east_m: float = 150, north_m: float = 100) -> tuple[float, float]:
        d_lon, d_lat = metres_to_degrees(self.sim.patrol.lat, east_m, north_m)
        return self.sim.patrol.lon + d_lon, self.sim.patrol.lat + d_lat

    def run(self, seconds: float, dt: float = 5.0, until=None) -> None:
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            self.now += timedelta(seconds=dt)
            before = len(self.actions())
            self.sim.step(self.now, dt)
            if self.handle_limit is not None and "accept" in self.actions()[before:]:
                self.notice(NoticeKind.ACCEPTED, self.updates()[-1][0].case_id, deadline=self.handle_limit,
                            state="accepted")
            if until is not None and until():
                return

    def updates(self) -> list[tuple[CaseUpdate, tuple[float, float]]]:
        """Every case publication, through the real decoder (which raises on one it refuses)."""
        out = []
        for topic, payload, where in self.sent:
            if topic == terminal_topic(self.sim.terminal_id, CASE):
                [update] = decode(topic, payload, self.now)
                assert isinstance(update, CaseUpdate)
                out.append((update, where))
        return out

    def actions(self) -> list[str]:
        return [u.action for u, _ in self.updates()]


def test_every_publication_of_a_case_flow_decodes(city, grid):
    t = Terminal(city, grid)
    t.notice(NoticeKind.DISPATCHED, place=t.near())
    t.run(2 * 3600)
    assert t.sent
    for topic, payload, _ in t.sent:
        assert decode(topic, payload, t.now)        # fixes, status and case updates alike


def test_a_dispatched_case_is_accepted_walked_to_started_and_fed_back_within_the_deadline(city, grid):
    t = Terminal(city, grid)
    place = t.near()
    t.notice(NoticeKind.DISPATCHED, place=place)
    t.run(2 * 3600, until=lambda: not t.sim.cases.busy)
    (accept, accepted_where), (start, where), (feedback, _) = t.updates()
    assert [accept.action, start.action, feedback.action] == ["accept", "start", "feedback"]
    assert {u.case_id for u, _ in t.updates()} == {"C20261124-000001"}
    assert accept.terminal_id == t.sim.terminal_id
    # accepted at 10-60 % of the three minutes left, by the simulator's clock (5-second steps)
    assert T0 + 0.1 * ACCEPT_LIMIT <= accept.time <= T0 + 0.6 * ACCEPT_LIMIT + timedelta(seconds=5)
    assert where == place                            # started on the spot, not on patrol
    walk = timedelta(seconds=_metres(accepted_where, place) / 1.5 - 5)  # at most 1.5 m/s, 5-second steps
    assert start.time >= accept.time + walk > accept.time
    assert accept.time < feedback.time <= accept.time + HANDLE_LIMIT
    assert feedback.note and "Rubbish cleared" in feedback.note
    assert 1 <= len(feedback.photo_refs) <= 3 and all(PHOTO_REF.match(p) for p in feedback.photo_refs)
    assert t.sim.patrol.task_target is None          # back on patrol


def test_a_notice_without_a_place_or_deadline_is_still_worked_at_the_fallback_pace(city, grid):
    t = Terminal(city, grid, cfg=replace(CALM, case_no_deadline_s=600))
    t.notice(NoticeKind.DISPATCHED, deadline=None)
    t.run(3 * 3600, until=lambda: not t.sim.cases.busy)
    updates = [u for u, _ in t.updates()]
    assert [u.action for u in updates] == ["accept", "start", "feedback"]
    assert updates[0].time <= T0 + timedelta(minutes=6, seconds=5)     # 10-60 % of 600 s


@pytest.mark.parametrize(("fail_fraction", "verdict"), [(0.0, "verify_pass"), (1.0, "verify_fail")])
def test_a_grid_supervisor_verifies_a_handled_case_on_site_per_the_fail_fraction(city, grid, fail_fraction, verdict):
    t = Terminal(city, grid, Role.GRID_SUPERVISOR, replace(CALM, verify_fail_fraction=fail_fraction))
    place = t.near(-120, 60)
    t.notice(NoticeKind.VERIFY, state="handled", deadline=timedelta(minutes=6), place=place)
    t.run(3600, until=lambda: not t.sim.cases.busy)
    [(update, where)] = t.updates()
    assert update.action == verdict
    assert where == place
    if verdict == "verify_fail":
        assert update.reason == "Rubbish still there (垃圾仍未清运)"
        assert len(update.photo_refs) == 1 and PHOTO_REF.match(update.photo_refs[0])
    else:
        assert update.reason is None


def test_a_member_who_is_not_a_supervisor_ignores_a_verify_notice(city, grid):
    t = Terminal(city, grid, Role.GRID_COORDINATOR)
    t.notice(NoticeKind.VERIFY, state="handled", place=t.near())
    t.run(3600)
    assert t.actions() == []
    assert t.sim.cases.ignored["not_for_me"] == 1 and not t.sim.cases.busy


def test_a_duplicate_notice_id_is_ignored(city, grid):
    t = Terminal(city, grid)
    t.notice(NoticeKind.DISPATCHED, place=t.near(), notice_id=7)
    t.notice(NoticeKind.DISPATCHED, place=t.near(), notice_id=7)   # the engine's outbox sent it twice
    t.run(2 * 3600, until=lambda: not t.sim.cases.busy)
    assert t.actions() == ["accept", "start", "feedback"]
    assert t.sim.cases.ignored["duplicate"] == 1
    assert t.sim.cases.notices["dispatched"] == 1


@pytest.mark.parametrize("payload", [
    b"not json", b"[1, 2]", b'{"notice_id": 1}',
    b'{"notice_id": 2, "ts": "2026-11-24T02:00:00+00:00", "kind": "teleport", "case_id": "C1", "state": "x",'
    b' "category": "noise", "urgency": "normal"}',
    b'{"notice_id": 3, "ts": "2026-11-24T02:00:00", "kind": "dispatched", "case_id": "C1", "state": "dispatched",'
    b' "category": "noise", "urgency": "normal", "deadline": "2026-11-24T02:03:00"}',     # no timezone
    b'{"notice_id": 4, "ts": "2026-11-24T02:00:00Z", "kind": "dispatched", "case_id": "C 1", "state": "dispatched",'
    b' "category": "noise", "urgency": "normal"}',                                         # not an id
])
def test_an_unreadable_notice_is_ignored_and_counted_and_the_terminal_carries_on(city, grid, payload):
    t = Terminal(city, grid)
    t.sim.on_downlink(terminal_topic(t.sim.terminal_id, NOTICE), payload, t.now)
    t.run(600)
    assert t.actions() == []
    assert t.sim.cases.ignored["unreadable"] == 1 and t.sim.cases.received == 1 and not t.sim.cases.busy
    t.notice(NoticeKind.DISPATCHED, place=t.near())
    t.run(600, until=lambda: "accept" in t.actions())
    assert t.actions() == ["accept"]


def test_rework_sends_the_member_back_and_leads_to_a_second_feedback_without_a_start(city, grid):
    t = Terminal(city, grid)
    place = t.near()
    t.notice(NoticeKind.DISPATCHED, place=place)
    t.run(2 * 3600, until=lambda: not t.sim.cases.busy)
    t.run(600)                                       # back on patrol, away from the spot
    t.notice(NoticeKind.REWORK, state="handling", deadline=HANDLE_LIMIT, place=place,
             reason="Rubbish still there")
    rework_at = t.now
    t.run(2 * 3600, until=lambda: not t.sim.cases.busy)
    updates = t.updates()
    assert [u.action for u, _ in updates] == ["accept", "start", "feedback", "feedback"]
    again, where = updates[-1]
    assert where == place and rework_at < again.time <= rework_at + HANDLE_LIMIT


def test_a_busy_terminal_rejects_a_second_dispatch_and_a_task_and_queues_a_verification(city, grid):
    t = Terminal(city, grid, Role.GRID_SUPERVISOR)
    t.notice(NoticeKind.DISPATCHED, "C-first", place=t.near())
    t.notice(NoticeKind.DISPATCHED, "C-second", place=t.near(-300, 0))
    t.sim.on_downlink(terminal_topic(t.sim.terminal_id, TASK), b'{"task_id": "K1", "lon": 119.3, "lat": 26.08}',
                      t.now)
    t.notice(NoticeKind.VERIFY, "C-other", state="handled", place=t.near(0, 200), deadline=timedelta(hours=1))
    [(rejected, _)] = t.updates()
    assert (rejected.case_id, rejected.action, rejected.reason) == ("C-second", "reject", BUSY_WITH_CASE)
    task_ack = [p for topic, p, _ in t.sent if topic.endswith("/task/ack")]
    assert len(task_ack) == 1 and b'"rejected"' in task_ack[0] and BUSY_WITH_CASE.encode() in task_ack[0]
    t.run(3 * 3600, until=lambda: not t.sim.cases.busy)
    assert [(u.case_id, u.action) for u, _ in t.updates()[1:]] == [
        ("C-first", "accept"), ("C-first", "start"), ("C-first", "feedback"), ("C-other", "verify_pass")]


def test_a_terminal_on_a_dispatcher_task_rejects_a_dispatched_case(city, grid):
    t = Terminal(city, grid)
    t.sim.on_task(b'{"task_id": "K1", "lon": 119.3, "lat": 26.08}', t.now)
    t.notice(NoticeKind.DISPATCHED, place=t.near())
    [(rejected, _)] = t.updates()
    assert (rejected.action, rejected.reason) == ("reject", BUSY_WITH_TASK)


def test_the_reject_fraction_rejects_a_dispatch_with_a_reason_at_the_accept_time(city, grid):
    t = Terminal(city, grid, cfg=replace(CALM, case_reject_fraction=1))
    t.notice(NoticeKind.DISPATCHED, place=t.near())
    t.run(3600)
    [(rejected, _)] = t.updates()
    assert rejected.action == "reject" and rejected.reason and rejected.reason != BUSY_WITH_CASE
    assert T0 + 0.1 * ACCEPT_LIMIT <= rejected.time <= T0 + 0.6 * ACCEPT_LIMIT + timedelta(seconds=5)
    assert not t.sim.cases.busy


def test_an_extension_is_asked_once_on_site_and_an_approval_moves_the_feedback_within_the_new_deadline(city, grid):
    t = Terminal(city, grid, cfg=replace(CALM, case_extension_fraction=1))
    t.notice(NoticeKind.DISPATCHED, place=t.near())
    t.run(4 * 3600, until=lambda: "extension" in t.actions())
    assert t.actions() == ["accept", "start", "extension"]
    asked = t.updates()[-1][0]
    assert asked.reason and re.fullmatch(r"\d+(m|h|wh|wd)", asked.extension)
    t.notice(NoticeKind.EXTENSION_APPROVED, state="handling", deadline=timedelta(hours=2))
    approved_at = t.now
    t.run(4 * 3600, until=lambda: not t.sim.cases.busy)
    assert t.actions() == ["accept", "start", "extension", "feedback"]
    assert approved_at < t.updates()[-1][0].time <= approved_at + timedelta(hours=2)


def test_the_late_fraction_feeds_back_after_the_handling_deadline(city, grid):
    t = Terminal(city, grid, cfg=replace(CALM, case_late_fraction=1))
    t.notice(NoticeKind.DISPATCHED, place=t.near())
    t.run(4 * 3600, until=lambda: not t.sim.cases.busy)
    (accept, _), _, (feedback, _) = t.updates()
    assert accept.time + 1.1 * HANDLE_LIMIT <= feedback.time <= accept.time + 1.6 * HANDLE_LIMIT + timedelta(minutes=5)


def test_a_withdrawn_case_is_dropped_and_the_member_goes_back_on_patrol(city, grid):
    t = Terminal(city, grid)
    t.notice(NoticeKind.DISPATCHED, place=t.near(400, 400))
    t.run(3600, until=lambda: t.actions() == ["accept"])
    assert t.sim.patrol.task_target is not None
    t.notice(NoticeKind.WITHDRAWN, state="registered", deadline=None)
    t.run(3 * 3600)
    assert t.actions() == ["accept"]
    assert not t.sim.cases.busy and t.sim.patrol.task_target is None


def test_a_resumed_case_in_handling_goes_on_to_feedback_and_escalated_is_information(city, grid):
    t = Terminal(city, grid)
    t.notice(NoticeKind.ESCALATED, state="handling", deadline=timedelta(minutes=-5))
    assert not t.sim.cases.busy
    t.notice(NoticeKind.RESUMED, state="handling", deadline=HANDLE_LIMIT, place=t.near())
    t.run(2 * 3600, until=lambda: not t.sim.cases.busy)
    assert t.actions() == ["feedback"]


@pytest.mark.parametrize("handle_limit", [timedelta(minutes=20), timedelta(hours=3)])
def test_the_handling_is_timed_against_the_deadline_the_accepted_notice_carries(city, grid, handle_limit):
    t = Terminal(city, grid, handle_limit=handle_limit)
    t.notice(NoticeKind.DISPATCHED, place=t.near())
    t.run(6 * 3600, until=lambda: not t.sim.cases.busy)
    (accept, _), _, (feedback, _) = t.updates()
    assert accept.time + 0.3 * handle_limit - timedelta(seconds=5) <= feedback.time
    assert feedback.time <= accept.time + 0.9 * handle_limit + timedelta(minutes=4)   # the walk and the on-site minutes


def test_without_an_accepted_notice_the_work_goes_on_at_the_fallback_pace(city, grid):
    t = Terminal(city, grid, handle_limit=None)
    t.notice(NoticeKind.DISPATCHED, place=t.near())
    t.run(3 * 3600, until=lambda: not t.sim.cases.busy)
    assert t.actions() == ["accept", "start", "feedback"]


def test_the_simulator_subscribes_terminals_to_notices_in_a_persistent_session_and_routes_them(city, capsys):
    passwords = {m.terminal_id: "pw" for m in city.members[:2]}
    sim = Simulator(city, passwords, "127.0.0.1", 1, CALM, max_members=2, max_gateways=0)
    try:
        terminal = sim.terminals[0]
        conn = terminal.connection
        notice_topic = terminal_topic(terminal.terminal_id, NOTICE)
        assert notice_topic in conn.subscriptions and terminal_topic(terminal.terminal_id, TASK) in conn.subscriptions
        assert conn.session_expiry_s >= 3600
        msg = mqtt.MQTTMessage(topic=notice_topic.encode())
        msg.payload = CaseNotice(1, terminal.terminal_id, datetime.now(timezone.utc), NoticeKind.DISPATCHED, "C1",
                                 "dispatched", "noise", "normal", "", "", None, None, None).payload()
        conn.handler(conn, msg)
        conn.handler(conn, msg)                      # redelivered
        assert terminal.cases.notices["dispatched"] == 1 and terminal.cases.busy
        sim.print_status(0.0)
        assert "cases 1 | notices 2 (ignored 1) | case updates 0 (none)" in capsys.readouterr().err
    finally:
        sim.mux.close()


def test_a_silent_terminal_never_answers_a_dispatch_and_stays_free(city, grid):
    t = Terminal(city, grid, cfg=replace(CALM, case_silent_fraction=1))
    t.notice(NoticeKind.DISPATCHED, place=t.near())
    t.run(3600)
    assert t.actions() == [] and not t.sim.cases.busy and t.sim.cases.ignored["silent"] == 1


def test_a_member_asked_to_check_answers_once_on_alarm_check_and_the_decoder_reads_it(city, grid):
    """紧急核实: a `check` notice (what to check: an alarm's sensor and id, on its case) is answered
    on alarm/check within ten simulated minutes, naming the case and the alarm, once however often
    the notice is delivered (at least once)."""
    t = Terminal(city, grid)
    notice = CaseNotice(99, t.sim.terminal_id, t.now, NoticeKind.CHECK, "C20261124-000009", "dispatched",
                        "gas_over_threshold", "urgent", "Gas over threshold", "Building 3", None, None, None, None)
    payload = orjson.dumps({**orjson.loads(notice.payload()), "sensor_id": "gas-0101", "alarm_id": "gas-0101-7"})
    for _ in range(2):                                                # delivered twice: checked once
        t.sim.on_downlink(terminal_topic(t.sim.terminal_id, NOTICE), payload, t.now)
    t.run(600, dt=10)
    checks = [decode(topic, body, t.now) for topic, body, _ in t.sent
              if topic == terminal_topic(t.sim.terminal_id, "alarm/check")]
    assert len(checks) == 1
    [[check]] = checks
    assert (check.case_id, check.sensor_id, check.alarm_id) == ("C20261124-000009", "gas-0101", "gas-0101-7")
    assert check.outcome in ("confirmed", "false_alarm", "need_help") and check.note
