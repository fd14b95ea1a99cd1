"""Emergency verification (紧急核实) without servers: the request and the answer in the pure case
machine, the `check` notice it sends, the answer on the wire (alarm/check naming a case), how the
screens pair requests with answers and pick the member asked by default, and the phone's answer."""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from cases.calendar import WorkCalendar
from cases.limits import LimitTable, Urgency
from cases.machine import Applied, Refusal, Rules, apply
from cases.model import Actor, ActorKind, Case, CheckAnswer, RequestCheck, Source, State
from cases.notices import Recipients, notices_for
from cases.reads import case_photos
from config.settings import REPO_ROOT
from core.city import CITY_TZ
from core.roles import Role
from dashboard.case_checks import checks_of, default_checker, not_to_ask
from dispatch.candidates import Candidate
from dispatch.status import DispatchStatus, Status
from simulator import payloads
from telemetry.decoders import SCHEMA_VIOLATION, DecodeError, decode
from telemetry.kinds import kind_of
from telemetry.kinds.alarm_check import AlarmCheck
from telemetry.notices import NoticeKind

GRID, STREET, OTHER_STREET = "350102001001001", "350102001", "350102002"
NOW = datetime(2026, 11, 4, 10, 0, tzinfo=CITY_TZ)
RULES = Rules({1: LimitTable.defaults()}, WorkCalendar())
DISPATCHER = Actor(ActorKind.USER, "ana", frozenset({"dispatcher"}), STREET)
FAR_DISPATCHER = Actor(ActorKind.USER, "far", frozenset({"dispatcher"}), OTHER_STREET)
LEADER = Actor(ActorKind.USER, "lei", frozenset({"leader"}), STREET)
IN_SOS, CHECKER, STRANGER = f"T{GRID}-1", f"T{GRID}-2", f"T{GRID}-3"
CHECKER_ACTOR = Actor(ActorKind.TERMINAL, CHECKER, frozenset({"grid_coordinator"}), GRID)
REF = "sha256:" + "ab" * 32


def sos_case(**changes) -> Case:
    case = Case("C-9", "sos", Urgency.URGENT, Source.SOS, GRID, GRID, State.REGISTERED, NOW, title="SOS · Wang",
                place="Grid 1", lat=26.08, lon=119.3, stage_seq=1, deadline=NOW + timedelta(minutes=10),
                source_key=f"sos:{IN_SOS}", acknowledged_by="ana")
    return replace(case, **changes)


def asked(case: Case) -> Case:
    outcome = apply(case, RequestCheck(CHECKER, sos_terminal_id=IN_SOS, sos_name="Wang", sos_lat=26.081,
                                       sos_lon=119.301, sos_at=NOW.isoformat()), DISPATCHER, NOW, RULES)
    assert isinstance(outcome, Applied), outcome
    return outcome.case


# --- the request ---------------------------------------------------------------------------------------

def test_a_request_adds_the_member_to_the_checkers_and_sends_them_a_check_notice_saying_what_to_check():
    outcome = apply(sos_case(), RequestCheck(CHECKER, sos_terminal_id=IN_SOS, sos_name="Wang", sos_lat=26.081,
                                             sos_lon=119.301, sos_at=NOW.isoformat(), reason="no answer by phone"),
                    DISPATCHER, NOW, RULES)
    assert isinstance(outcome, Applied), outcome
    assert outcome.case.checkers == (CHECKER,) and outcome.case.state is State.REGISTERED
    [event] = outcome.events
    assert (event.command, event.reason, event.detail["terminal_id"], event.detail["sos_terminal_id"]) == \
        ("request_check", "no answer by phone", CHECKER, IN_SOS)
    [notice] = notices_for(outcome.case, outcome.events, Recipients.__new__(Recipients))
    body = orjson.loads(notice.body)
    assert (notice.terminal_id, notice.kind) == (CHECKER, NoticeKind.CHECK)
    assert {k: body[k] for k in ("kind", "case_id", "place", "lat", "lon", "sos_terminal_id", "sos_name", "sos_lat",
                                 "sos_lon", "reason")} == {
        "kind": "check", "case_id": "C-9", "place": "Grid 1", "lat": 26.08, "lon": 119.3, "sos_terminal_id": IN_SOS,
        "sos_name": "Wang", "sos_lat": 26.081, "sos_lon": 119.301, "reason": "no answer by phone"}
    assert "sensor_id" not in body


def test_an_alarm_s_check_notice_names_the_alarm():
    case = sos_case(source=Source.ALARM, source_key="alarm:gas-1/gas_over_threshold", state=State.REPORTED)
    outcome = apply(case, RequestCheck(CHECKER, sensor_id="gas-1", alarm_id="GAS-7"), DISPATCHER, NOW, RULES)
    [notice] = notices_for(outcome.case, outcome.events, Recipients.__new__(Recipients))
    body = orjson.loads(notice.body)
    assert (body["sensor_id"], body["alarm_id"], body["state"]) == ("gas-1", "GAS-7", "reported")
    assert "sos_terminal_id" not in body


@pytest.mark.parametrize("case, actor, command, code, words", [
    (sos_case(source=Source.REPORT, source_key=None), DISPATCHER, RequestCheck(CHECKER), "invalid",
     "only a case raised by an alarm or an SOS"),
    (sos_case(), DISPATCHER, RequestCheck(IN_SOS), "invalid", "raised the SOS"),
    (sos_case(checkers=(CHECKER,)), DISPATCHER, RequestCheck(CHECKER), "invalid", "asked already"),
    (sos_case(), DISPATCHER, RequestCheck(" "), "invalid", "needs the member"),
    (sos_case(), LEADER, RequestCheck(CHECKER), "actor", "needs a login"),
    (sos_case(), FAR_DISPATCHER, RequestCheck(CHECKER), "scope", "outside"),
    (sos_case(), CHECKER_ACTOR, RequestCheck(STRANGER), "actor", "needs a login"),
    (sos_case(state=State.CLOSED), DISPATCHER, RequestCheck(CHECKER), "state", "closed"),
], ids=["report", "own-sos", "twice", "nobody", "leader", "other-street", "terminal", "closed"])
def test_a_request_is_refused_with_the_reason(case, actor, command, code, words):
    outcome = apply(case, command, actor, NOW, RULES)
    assert isinstance(outcome, Refusal) and outcome.code == code and words in outcome.reason, outcome


# --- the answer ----------------------------------------------------------------------------------------

def test_need_help_is_recorded_with_its_photos_and_makes_the_case_urgent_and_unacknowledged_again():
    case = asked(sos_case(urgency=Urgency.NORMAL))
    outcome = apply(case, CheckAnswer("need_help", "他摔倒了", (REF,)), CHECKER_ACTOR, NOW + timedelta(minutes=4),
                    RULES)
    assert isinstance(outcome, Applied), outcome
    [event] = outcome.events
    assert (event.command, event.actor, event.from_state, event.to_state) == \
        ("check", CHECKER_ACTOR, State.REGISTERED, State.REGISTERED)
    assert event.detail == {"outcome": "need_help", "note": "他摔倒了", "photo_refs": [REF], "urgency": "urgent"}
    assert (outcome.case.urgency, outcome.case.acknowledged_by, outcome.case.checkers) == (Urgency.URGENT, None, ())
    assert outcome.case.deadline == case.deadline                     # the running clock keeps its deadline
    assert notices_for(outcome.case, outcome.events, Recipients.__new__(Recipients)) == []


def test_a_false_alarm_changes_nothing_but_the_record_and_a_second_answer_is_refused():
    case = asked(sos_case())
    outcome = apply(case, CheckAnswer("false_alarm"), CHECKER_ACTOR, NOW, RULES)
    assert (outcome.case.urgency, outcome.case.acknowledged_by) == (Urgency.URGENT, "ana")
    again = apply(outcome.case, CheckAnswer("confirmed"), CHECKER_ACTOR, NOW, RULES)
    assert isinstance(again, Refusal) and "was not asked" in again.reason


def test_only_a_terminal_asked_may_answer_and_only_with_an_outcome_it_knows():
    case = asked(sos_case())
    stranger = Actor(ActorKind.TERMINAL, STRANGER, frozenset({"grid_administrator"}), GRID)
    refused = apply(case, CheckAnswer("confirmed"), stranger, NOW, RULES)
    assert isinstance(refused, Refusal) and refused.code == "actor" and STRANGER in refused.reason
    assert isinstance(apply(case, CheckAnswer("confirmed"), DISPATCHER, NOW, RULES), Refusal)
    wrong = apply(case, CheckAnswer("maybe"), CHECKER_ACTOR, NOW, RULES)
    assert isinstance(wrong, Refusal) and wrong.code == "invalid" and "need_help" in wrong.reason


def test_an_answer_after_the_case_closed_is_still_its_record_and_changes_no_urgency():
    case = replace(asked(sos_case(urgency=Urgency.NORMAL)), state=State.CLOSED)
    outcome = apply(case, CheckAnswer("need_help"), CHECKER_ACTOR, NOW, RULES)
    assert isinstance(outcome, Applied) and outcome.case.urgency is Urgency.NORMAL


# --- the answer on the wire ----------------------------------------------------------------------------

def test_an_answer_naming_the_case_decodes_with_its_photos_and_fills_its_row():
    topic, payload = payloads.publication("alarm_check", CHECKER, NOW, case_id="C-9", outcome="need_help",
                                          note="摔倒", photo_refs=[REF])
    assert topic == f"gcc/v1/terminal/{CHECKER}/alarm/check"
    [check] = decode(topic, payload, NOW)
    assert (check.case_id, check.sensor_id, check.outcome, check.photos) == ("C-9", None, "need_help", (REF,))
    row = dict(zip(kind_of(check).columns, kind_of(check).row(_tagged(check), NOW), strict=True))
    assert (row["case_id"], row["sensor_id"], row["photo_refs"]) == ("C-9", None, '{"' + REF + '"}')


def _tagged(check: AlarmCheck):
    from ingest.model import Enriched
    return Enriched(check, GRID, "M1", home_grid_code=GRID, received_at=NOW)


@pytest.mark.parametrize("fields, words", [
    ({"outcome": "confirmed"}, "case_id, or sensor_id and alarm_id"),
    ({"sensor_id": "gas-1", "outcome": "confirmed"}, "both sensor_id and alarm_id"),
    ({"case_id": "C-9", "outcome": "confirmed", "photo_refs": [REF] * 5}, "photo_refs"),
    ({"case_id": "C 9", "outcome": "confirmed"}, "case_id"),
], ids=["neither", "half-an-alarm", "five-photos", "bad-case-id"])
def test_an_answer_that_does_not_say_what_was_checked_is_refused_with_the_field_named(fields, words):
    topic, payload = payloads.publication("alarm_check", CHECKER, NOW, **fields)
    with pytest.raises(DecodeError) as refused:
        decode(topic, payload, NOW)
    assert refused.value.reason == SCHEMA_VIOLATION and words in refused.value.detail


# --- the screens ---------------------------------------------------------------------------------------

def _event(command: str, actor: str, minutes: int, **detail) -> dict:
    return {"time": NOW + timedelta(minutes=minutes), "command": command, "actor": actor, "detail": detail}


def test_the_screens_pair_each_answer_with_its_members_request_newest_first():
    events = [_event("open", "intake", 0), _event("request_check", "ana", 1, terminal_id=CHECKER),
              _event("request_check", "ana", 2, terminal_id=STRANGER),
              _event("check", CHECKER, 5, outcome="confirmed", note="smoke", photo_refs=[REF])]
    stranger_check, checker_check = checks_of(events)
    assert (stranger_check["terminal_id"], stranger_check["answer"]) == (STRANGER, None)
    assert checker_check["answer"] == {"time": NOW + timedelta(minutes=5), "outcome": "confirmed", "note": "smoke",
                                       "photo_refs": [REF]}
    photos = case_photos({"sources": [], "events": [dict(e, detail=e["detail"]) for e in events]})
    assert [(p["ref"], p["stage"]) for p in photos] == [(REF, "check")]


def _candidate(terminal_id: str, grid: str, metres: float, status=DispatchStatus.AVAILABLE) -> Candidate:
    return Candidate(terminal_id, terminal_id, Role.GRID_COORDINATOR, grid, 119.3, 26.08, metres, metres, Status(
        status, "", 0), 0, True, "")


def test_by_default_the_nearest_available_member_of_the_case_s_grid_is_asked_never_the_one_in_sos():
    case = sos_case(checkers=(STRANGER,))
    candidates = [_candidate(IN_SOS, GRID, 5), _candidate(STRANGER, GRID, 20), _candidate("T-next-grid", "x", 30),
                  _candidate("T-busy", GRID, 40, DispatchStatus.EN_ROUTE), _candidate(CHECKER, GRID, 250),
                  _candidate("T-far", GRID, 900)]
    assert default_checker(case, candidates).terminal_id == CHECKER
    assert not_to_ask(case) == {IN_SOS, STRANGER}
    assert default_checker(case, candidates[:4]) is None


# --- the phone -----------------------------------------------------------------------------------------

ANSWER_JS = """
globalThis.document = { addEventListener() {} };
const { checkAnswer } = await import(process.argv[1]);
const cases = JSON.parse(process.argv[2]);
console.log(JSON.stringify(cases.map(([body, outcome, note, refs]) => checkAnswer(body, outcome, note, refs, "T"))));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node runs the phone app's module")
def test_the_phone_answers_an_sos_by_its_case_and_an_alarm_by_its_case_and_alarm():
    module = (REPO_ROOT / "handheld/app/js/screens/sos.js").as_uri()
    cases = [[{"kind": "check", "case_id": "C-9", "sos_terminal_id": IN_SOS}, "need_help", "摔倒", [REF]],
             [{"kind": "check", "case_id": "C-8", "sensor_id": "gas-1", "alarm_id": "GAS-7"}, "false_alarm", "", []],
             [{"kind": "check", "sensor_id": "gas-1"}, "confirmed", "", []]]
    done = subprocess.run(["node", "--input-type=module", "-e", ANSWER_JS, module, json.dumps(cases)],
                          capture_output=True, text=True, timeout=60, check=True)
    sos, alarm, unanswerable = json.loads(done.stdout)
    assert sos == {"ts": "T", "outcome": "need_help", "case_id": "C-9", "note": "摔倒", "photo_refs": [REF]}
    assert alarm == {"ts": "T", "outcome": "false_alarm", "case_id": "C-8", "sensor_id": "gas-1", "alarm_id": "GAS-7"}
    assert unanswerable is None
    for answer in (sos, alarm):                        # what the phone sends, the server takes
        body = {**answer, "ts": datetime.now(timezone.utc).isoformat()}
        [check] = decode(f"gcc/v1/terminal/{CHECKER}/alarm/check", orjson.dumps(body), datetime.now(timezone.utc))
        assert check.case_id == answer["case_id"]
