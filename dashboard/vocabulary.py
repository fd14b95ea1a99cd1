"""What the screens call things and how they colour them: labels from core.catalogue (the one
place a label is spelled), colours defined here (the one place a colour is). The browser gets both
with every snapshot (`for_browser`); Python layouts (legends) use the same entries."""
from __future__ import annotations

from functools import cache

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
    Label,
    MemberState,
    Severity,
)
from core.roles import ROLE_LABELS, Role

# one answer for every failed login (wrong name, wrong password, locked out): it tells nobody who exists
LOGIN_FAILED = Label("Wrong username or password, or too many attempts: wait and try again",
                     "用户名或密码错误，或尝试次数过多，请稍后再试")

MEMBER_STATE_COLOURS = {MemberState.ONLINE: "#30d158", MemberState.SILENT: "#ff9f0a", MemberState.OFFLINE: "#8e8e93"}
SEVERITY_COLOURS = {Severity.CRITICAL: "#ff3b30", Severity.HIGH: "#ff9500", Severity.MEDIUM: "#ffd60a",
                    Severity.LOW: "#64d2ff"}
URGENCY_COLOURS = {"urgent": "#ff3b30", "normal": "#64d2ff"}
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
