"""A member's dispatch status, in the spirit of computer-aided dispatch: what a dispatcher needs to
know to send them somewhere, and why it is so.

    off_duty     not on today's duty roster, or outside their shift (dispatch/roster.py)
    offline      the terminal said so (or its last will did), or it has never been heard
    unavailable  online, but no fix for `fresh_s` (we do not know where they are)
    requested    a case is offered to them and not yet accepted
    en_route     they accepted a case and are on their way
    on_scene     they are handling a case on site
    available    none of the above: on duty, located, free ("out of area" when the last fix lies
                 outside every grid: it is stored with no grid, and the member is where it says)

Derived from the live state (telemetry.live.TerminalLive: status, last fix) and the member's open
case work (cases dispatched to them, by state). A pure function: the caller reads both.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from core.catalogue import CaseState, Label, MemberState
from telemetry.live import TerminalLive

FRESH_S = 120.0             # a fix older than this: we do not know where the member is


class DispatchStatus(str, Enum):
    OFF_DUTY = "off_duty"
    OFFLINE = "offline"
    UNAVAILABLE = "unavailable"
    REQUESTED = "requested"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    AVAILABLE = "available"


STATUS_LABELS: dict[DispatchStatus, Label] = {
    DispatchStatus.OFF_DUTY: Label("off duty", "休息"), DispatchStatus.OFFLINE: Label("offline", "离线"),
    DispatchStatus.UNAVAILABLE: Label("no position", "无定位"),
    DispatchStatus.REQUESTED: Label("requested", "待接单"), DispatchStatus.EN_ROUTE: Label("en route", "前往中"),
    DispatchStatus.ON_SCENE: Label("on scene", "处置中"), DispatchStatus.AVAILABLE: Label("available", "空闲"),
}
# a case's state -> what it makes its handler (the most engaged one wins)
_WORK = {CaseState.DISPATCHED: DispatchStatus.REQUESTED, CaseState.ACCEPTED: DispatchStatus.EN_ROUTE,
         CaseState.HANDLING: DispatchStatus.ON_SCENE}
IN_HAND = tuple(_WORK)              # the states of a case in its handler's hands
_ENGAGED = [DispatchStatus.ON_SCENE, DispatchStatus.EN_ROUTE, DispatchStatus.REQUESTED]


@dataclass(frozen=True)
class Status:
    status: DispatchStatus
    cause: str                      # why, in words a dispatcher reads
    workload: int                   # open cases dispatched to them (offered, accepted, handling)


def status_of(live: TerminalLive | None, work: list[str], now: float, fresh_s: float = FRESH_S,
              on_duty: bool = True) -> Status:
    """The member's status from their terminal's live state, the states of the cases that are
    theirs (`work`: e.g. ["accepted", "dispatched"]) and the duty roster (work in hand comes first:
    a member finishing a case past the end of their shift is still on it)."""
    workload = sum(1 for state in work if state in _WORK)
    if not on_duty and workload == 0:
        return Status(DispatchStatus.OFF_DUTY, "not on duty now (roster)", workload)
    if live is None:
        return Status(DispatchStatus.OFFLINE, "never heard from", workload)
    if live.state == MemberState.OFFLINE.value:
        return Status(DispatchStatus.OFFLINE, f"offline for {_ago(now - live.state_t)}", workload)
    engaged = {_WORK[state] for state in work if state in _WORK}
    for status in _ENGAGED:
        if status in engaged:
            return Status(status, f"{workload} open case{'s' if workload != 1 else ''}", workload)
    if now - live.t > fresh_s:
        return Status(DispatchStatus.UNAVAILABLE, f"no fix for {_ago(now - live.t)}", workload)
    if live.grid_code is None:                  # the last fix lies outside every grid (near the edge)
        return Status(DispatchStatus.AVAILABLE, "free, out of area", workload)
    return Status(DispatchStatus.AVAILABLE, "free, located", workload)


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
