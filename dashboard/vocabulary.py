"""What the screens call things and how they colour them: labels from core.catalogue (the one
place a label is spelled), colours defined here (the one place a colour is). The browser gets both
with every snapshot (`for_browser`); Python layouts (legends) use the same entries."""
from __future__ import annotations

from functools import cache

from cases.model import FINISHED, values
from core.catalogue import (
    ACTION_LABELS,
    ALARM_TYPE_LABELS,
    CASE_CATEGORY_LABELS,
    CASE_SOURCE_LABELS,
    CASE_STAGE_LABELS,
    CASE_STATE_LABELS,
    MEMBER_STATE_LABELS,
    ORG_LEVEL_LABELS,
    SEVERITY_LABELS,
    TASK_ACTION_LABELS,
    URGENCY_LABELS,
    AuditAction,
    CaseState,
    Label,
    MemberState,
    Severity,
)
from core.ledger import ChangeAction, HouseUse, Registration, ThingState
from core.roles import ROLE_LABELS, Role

# one answer for every failed login (wrong name, wrong password, locked out): it tells nobody who exists
LOGIN_FAILED = Label("Wrong username or password, or too many attempts: wait and try again",
                     "用户名或密码错误，或尝试次数过多，请稍后再试")

MEMBER_STATE_COLOURS = {MemberState.ONLINE: "#30d158", MemberState.SILENT: "#ff9f0a", MemberState.OFFLINE: "#8e8e93"}
SEVERITY_COLOURS = {Severity.CRITICAL: "#ff3b30", Severity.HIGH: "#ff9500", Severity.MEDIUM: "#ffd60a",
                    Severity.LOW: "#64d2ff"}
URGENCY_COLOURS = {"urgent": "#ff3b30", "normal": "#64d2ff"}
# the dispatcher console's words for the case states it shows (assets/dispatch.js): what a case in
# its queue waits for, and the steps of a task from its offer to its handler's feedback, in order
CONSOLE_QUEUE = {CaseState.REPORTED: Label("to register", "待立案"),
                 CaseState.REGISTERED: Label("to dispatch", "待派遣"),
                 CaseState.DISPATCHED: Label("offered", "待接单")}
CONSOLE_TASK_STEPS = {CaseState.DISPATCHED: Label("offered", "已派遣"), CaseState.ACCEPTED: Label("en route", "前往中"),
                      CaseState.HANDLING: Label("on scene", "处置中"), CaseState.HANDLED: Label("done", "已处置")}
# the building panel's houses by use (dashboard/pages/ledger.py draws them and their legend)
HOUSE_USE_COLOURS = {HouseUse.OWNER_OCCUPIED: "#0a84ff", HouseUse.RENTED: "#ff9f0a", HouseUse.COMMERCIAL: "#bf5af2",
                     HouseUse.VACANT: "#48484a", HouseUse.OTHER: "#8e8e93"}
# the ledger's statistics and map (dashboard/pages/ledger_stats.py, ledger_map.py)
REGISTRATION_COLOURS = {Registration.LOCAL: "#0a84ff", Registration.FLOATING: "#ff9f0a",
                        Registration.FOREIGN: "#bf5af2"}
THING_STATE_COLOURS = {ThingState.GOOD: "#30d158", ThingState.DAMAGED: "#ff3b30", ThingState.MISSING: "#ff9f0a",
                       ThingState.UNDER_REPAIR: "#64d2ff"}
CHANGE_ACTION_COLOURS = {ChangeAction.CREATE: "#30d158", ChangeAction.UPDATE: "#0a84ff", ChangeAction.DELETE: "#ff3b30"}
# ordered bands (ages, floors, occupancy): light to strong
SEQUENTIAL_COLOURS = ("#64d2ff", "#0a84ff", "#5e5ce6", "#bf5af2", "#ff9f0a", "#ff3b30")
ROLE_COLOURS = {Role.GRID_ADMINISTRATOR: "#0a84ff", Role.GRID_COORDINATOR: "#64d2ff",
                Role.GRID_POLICE_OFFICER: "#f2f2f7", Role.GRID_SUPERVISOR: "#bf5af2"}


def legend(*, member_states: bool = True, severities: tuple[Severity, ...] = ()) -> list[tuple[str, str]]:
    """(colour, label) pairs for a map legend."""
    entries = [(MEMBER_STATE_COLOURS[s], str(MEMBER_STATE_LABELS[s])) for s in MemberState] if member_states else []
    return entries + [(SEVERITY_COLOURS[s], str(SEVERITY_LABELS[s])) for s in severities]


@cache
def for_browser() -> dict:
    """Labels ("English 中文") and colours, keyed by the values the live changes carry."""
    def text(labels: dict) -> dict[str, str]:
        return {_key(k): str(v) for k, v in labels.items()}

    return {
        "labels": {
            "category": text(CASE_CATEGORY_LABELS),           # a case's category
            "alarm_type": text(ALARM_TYPE_LABELS),
            "role": text(ROLE_LABELS),
            "member_state": text(MEMBER_STATE_LABELS),
            "severity": text(SEVERITY_LABELS),
            "task_action": text(TASK_ACTION_LABELS),
            "action": text(ACTION_LABELS),
            "case_state": text(CASE_STATE_LABELS),
            "case_stage": text(CASE_STAGE_LABELS),
            "urgency": text(URGENCY_LABELS),
            "org_level": text(ORG_LEVEL_LABELS),
            "case_source": text(CASE_SOURCE_LABELS),
        },
        # the case states' values by name (the browser spells none) and the console's words for its states
        "case_states": {s.name: s.value for s in CaseState},
        "finished_case_states": values(FINISHED),
        "audit_actions": {a.name: a.value for a in AuditAction},       # the keys by name, for labels
        "console": {"queue": text(CONSOLE_QUEUE),
                    "task_steps": [[s.value, str(v)] for s, v in CONSOLE_TASK_STEPS.items()]},
        "colours": {
            "member_state": {_key(k): v for k, v in MEMBER_STATE_COLOURS.items()},
            "severity": {_key(k): v for k, v in SEVERITY_COLOURS.items()},
            "role": {_key(k): v for k, v in ROLE_COLOURS.items()},
            "urgency": dict(URGENCY_COLOURS),
        },
    }


def _key(member) -> str:
    value = getattr(member, "value", member)
    return str(value)
