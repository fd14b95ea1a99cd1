"""Every door where people's text comes in refuses what is not text (issue 23, item 1): a control
character, a bidirectional override, more than the field's length; each refusal names the field
and is audited, and nothing is stored. Markup is data: it is stored as typed (the screens show it
as text: test_hostile_text_browser). Through the dashboard's own database role, as the screens
give these commands: a user's and a wall screen's name, a hotline case's title, place and note, an
announcement, a case's reason, an alarm acknowledgement's note, a calendar day's name, a member's
name (added, changed, imported) and a phone's label."""
from __future__ import annotations

import uuid
from datetime import date

import pytest

from cases.model import Refuse
from core.roles import UserRole
from dashboard.account_commands import AddUser, CreateWallToken
from dashboard.alarms import AcknowledgeAlarm
from dashboard.announcements import Announce
from dashboard.authz import Identity
from dashboard.case_actions import CaseAction, CaseRules, OpenHotlineCase, SetCalendarDay
from dashboard.commands import Commands
from registry import imports
from registry.broker import BrokerAdmin
from registry.store import Actor as RegistryActor
from registry.store import DeviceRegistry, RegistryError

from .ingest_helpers import owner_rows
from .test_cases_engine import seeded
from .test_commands import _open_alarm

pytestmark = pytest.mark.slow

ADMIN = Identity("t-doors-admin", frozenset({UserRole.ADMIN}), "")
MARKUP = "<img src=x onerror=alert(1)>"
BAD = {"an RTL override": "Gate\u202e2", "a control character": "Gate\u00072", "10,000 characters": "x" * 10_000}


@pytest.fixture(scope="module")
def doors(stack, city):
    seeded(stack)
    app_settings = stack.app_settings("dashboard")
    r = app_settings.redis_client()
    commands = Commands(city, r, app_settings.pg_dsn, producer="test-doors")
    registry = DeviceRegistry(app_settings.pg_dsn, BrokerAdmin.from_settings(app_settings))
    yield commands, CaseRules(commands), registry
    r.close()


def _new(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _commands(city, rules, value: str, case_id: str, alarm):
    grid = city.grids[7].code
    return {
        "a note": AcknowledgeAlarm(alarm[1].sensor_id, alarm[0], note=value),
        "a display name": AddUser(_new("t-door"), value, "leader", ""),
        "a wall screen's name": CreateWallToken(value, ""),
        "a case's title": OpenHotlineCase("exposed_garbage", "normal", grid, value, "Gate 2", rules),
        "a place": OpenHotlineCase("exposed_garbage", "normal", grid, "Garbage", value, rules),
        "a case's note": OpenHotlineCase("exposed_garbage", "normal", grid, "Garbage", "Gate 2", rules, note=value),
        "an announcement's title": Announce(grid, value[:80], "Water is off tomorrow 9-12."),
        "an announcement's text": Announce(grid, "Water", value),
        "a reason": CaseAction(case_id, Refuse(value), rules),
        "a day's name": SetCalendarDay(date(2027, 11, 30), False, value, rules),
    }


def _reported(stack, city) -> str:
    from .test_case_notices import _reported_case

    return _reported_case(stack, stack.app_settings("cases"), city.grids[7].code)


@pytest.mark.parametrize("what", sorted(BAD))
def test_every_screen_command_refuses_text_that_is_not_text_naming_the_field(stack, city, doors, what):
    commands, rules, _ = doors
    case_id = _reported(stack, city)
    r = stack.settings().redis_client()
    try:
        detector = [s for s in city.sensors if s.kind.value == "gas_detector"][-1]   # one other tests leave alone:
        alarm = _open_alarm(stack.settings(), city, r, sensor=detector)              # its alarm stays open
    finally:
        r.close()
    audited = owner_rows(stack, "select count(*) from audit_log where actor = %s and outcome = 'refused'",
                         ADMIN.user)[0][0]
    cases = owner_rows(stack, "select count(*) from cases")[0][0]
    for field, command in _commands(city, rules, BAD[what], case_id, alarm).items():
        if field == "an announcement's title" and what == "10,000 characters":
            continue                                       # cut to the form's 80 above: a length of its own
        result = commands.execute(ADMIN, command, "127.0.0.1")
        assert not result.ok, f"{field} with {what} was taken"
        assert field in result.reason, (field, result.reason)
    assert owner_rows(stack, "select count(*) from cases")[0][0] == cases            # nothing stored
    assert owner_rows(stack, "select state from cases where case_id = %s", case_id) == [("reported",)]
    assert owner_rows(stack, "select count(*) from audit_log where actor = %s and outcome = 'refused'",
                      ADMIN.user)[0][0] >= audited + 9                              # each refusal audited
    assert owner_rows(stack, "select count(*) from alarm_acknowledgements where alarm_id = %s", alarm[0]) == [(0,)]


def test_markup_is_stored_as_typed(stack, city, doors):
    commands, rules, _ = doors
    result = commands.execute(ADMIN, OpenHotlineCase("exposed_garbage", "normal", city.grids[7].code,
                                                     f"{MARKUP} at the gate", "Gate 2", rules), "127.0.0.1")
    assert result.ok, result.reason
    assert owner_rows(stack, "select title from cases where case_id = %s", result.reply) == [(f"{MARKUP} at the gate",)]


@pytest.mark.parametrize("what", sorted(BAD))
def test_the_registry_refuses_a_member_name_or_phone_label_that_is_not_text(stack, city, doors, what):
    _, _, registry = doors
    actor = RegistryActor(ADMIN.user, ("admin",), "127.0.0.1")
    grid = city.grids[8]
    member = next(m for m in city.members if m.grid_code == grid.code)
    member_id = _new("M")
    with pytest.raises(RegistryError, match="a member's name"):
        registry.add_member(actor, member_id, BAD[what], "grid_administrator", grid.code, _new("T"))
    assert owner_rows(stack, "select count(*) from members where member_id = %s", member_id) == [(0,)]
    with pytest.raises(RegistryError, match="a member's name"):
        registry.change_member(actor, member.member_id, name=BAD[what])
    assert owner_rows(stack, "select name from members where member_id = %s", member.member_id) == [(member.name,)]
    with pytest.raises(RegistryError, match="a device's label"):
        registry.add_device(actor, member.member_id, "owntracks", _new("ot"), BAD[what])
    rows = imports.rows_of(f"member_id,name,role,grid_code,terminal_id\n{_new('M')},\"{BAD[what]}\","
                           f"grid_administrator,{grid.code},{_new('T')}\n")
    [problem] = imports.problems(rows, stack.app_settings("dashboard").pg_dsn)
    assert problem.startswith("line 2: name ")
