"""The words of a case's life (../shared/DOMAIN.md), as types: states, who acts, what they ask,
the case as stored, and the event each change leaves behind."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar

from cases.limits import Limit, Stage, Urgency
from core.catalogue import CaseState as State  # the states' one spelling, with their labels

# the clock that runs in each state (none: the case waits for nobody, or is over)
STAGE_OF: dict[State, Stage] = {
    State.REPORTED: Stage.REGISTER, State.REGISTERED: Stage.DISPATCH, State.DISPATCHED: Stage.ACCEPT,
    State.ACCEPTED: Stage.HANDLE, State.HANDLING: Stage.HANDLE, State.HANDLED: Stage.VERIFY,
    State.VERIFIED: Stage.CLOSE,
}
FINISHED = frozenset({State.REFUSED, State.CLOSED, State.EVALUATED})
OPEN = frozenset(State) - FINISHED
NOT_ACCEPTED = frozenset({State.REPORTED, State.REGISTERED, State.DISPATCHED})


def values(states) -> list[str]:
    """A set of states as SQL takes it: one array parameter (`state = any(%s)`, `state <> all(%s)`)."""
    return sorted(s.value for s in states)


class Source(str, Enum):
    REPORT = "report"               # a terminal's incident report
    ALARM = "alarm"                 # a device alarm at or above the configured severity
    SOS = "sos"                     # a member's emergency report
    HOTLINE = "hotline"             # entered by a dispatcher (12345 calls, walk-ins)


class ActorKind(str, Enum):
    USER = "user"                   # a person at the screens (dashboard login)
    TERMINAL = "terminal"           # a grid member's handheld
    SYSTEM = "system"               # the intake and the escalation engine


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    name: str                       # the username, the terminal id, or the process
    roles: frozenset[str]           # UserRole values for a user; the member's role for a terminal
    scope_code: str = ""            # a user's org unit ("" the city); a terminal's home grid

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(ActorKind.SYSTEM, name, frozenset({"system"}))


@dataclass(frozen=True)
class Extension:
    """A handler's request for more time, until a leader approves or refuses it."""
    limit: Limit
    reason: str
    asked_by: str
    asked_at: datetime


@dataclass(frozen=True)
class Case:
    case_id: str
    category: str
    urgency: Urgency
    source: Source
    grid_code: str | None           # where it is (None: a hotline case placed at a higher level)
    org_code: str                   # the org unit responsible: the grid, or the level it was placed at
    state: State
    opened_at: datetime
    title: str = ""
    place: str = ""                 # as people say it: building, community, grid
    lat: float | None = None        # where it is, when known (the map)
    lon: float | None = None
    limits_version: int = 1
    stage_seq: int = 0              # +1 each time a stage clock starts (the escalation ladder's key)
    stage_started_at: datetime | None = None
    deadline_original: datetime | None = None   # the stage's deadline as first computed
    deadline: datetime | None = None            # after approved extensions
    warn_at: datetime | None = None
    handler: str | None = None      # the terminal id of the member it is dispatched to
    suspended_from: State | None = None
    pending_extension: Extension | None = None
    rework_count: int = 0
    return_count: int = 0
    extension_count: int = 0
    reopen_count: int = 0
    escalation_level: str | None = None         # the highest level notified for this stage, or None
    acknowledged_by: str | None = None          # a person has seen it (an SOS pulses until then)
    rating: int | None = None
    closed_at: datetime | None = None
    source_key: str | None = None   # what it is made of, one open case each: "alarm:<sensor>/<type>", "sos:<terminal>"
    unassigned: bool = False        # its offers ran out (cases.offers): it waits for a dispatcher
    checkers: tuple[str, ...] = ()  # the terminals asked to check it on site (紧急核实) that have not answered

    @property
    def stage(self) -> Stage | None:
        return STAGE_OF.get(self.state)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN


@dataclass(frozen=True)
class Event:
    """One change of a case: what the append-only event log keeps."""
    case_id: str
    at: datetime
    command: str
    actor: Actor
    from_state: State | None
    to_state: State
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# --- commands: what someone asks of a case ------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    name: ClassVar[str]


@dataclass(frozen=True)
class Register(Command):
    name: ClassVar[str] = "register"


@dataclass(frozen=True)
class Refuse(Command):
    reason: str
    name: ClassVar[str] = "refuse"


@dataclass(frozen=True)
class Dispatch(Command):
    handler: str                    # a terminal id (the caller checks it names a member)
    handler_grid: str | None = None
    rank: int | None = None         # its place among the candidates (None: chosen by hand)
    why: str = ""                   # why it ranked there (dispatch.candidates)
    name: ClassVar[str] = "dispatch"


@dataclass(frozen=True)
class Accept(Command):
    name: ClassVar[str] = "accept"


@dataclass(frozen=True)
class Reject(Command):
    reason: str
    name: ClassVar[str] = "reject"


@dataclass(frozen=True)
class Start(Command):
    name: ClassVar[str] = "start"


@dataclass(frozen=True)
class Feedback(Command):
    note: str
    photo_refs: tuple[str, ...] = ()
    name: ClassVar[str] = "feedback"


@dataclass(frozen=True)
class Verify(Command):
    passed: bool
    reason: str = ""
    photo_refs: tuple[str, ...] = ()
    name: ClassVar[str] = "verify"


@dataclass(frozen=True)
class Close(Command):
    name: ClassVar[str] = "close"


@dataclass(frozen=True)
class Evaluate(Command):
    rating: int
    note: str = ""
    name: ClassVar[str] = "evaluate"


@dataclass(frozen=True)
class Return(Command):
    reason: str
    name: ClassVar[str] = "return"


@dataclass(frozen=True)
class RequestExtension(Command):
    limit: Limit
    reason: str
    name: ClassVar[str] = "request_extension"


@dataclass(frozen=True)
class DecideExtension(Command):
    approve: bool
    reason: str = ""
    name: ClassVar[str] = "decide_extension"


@dataclass(frozen=True)
class Suspend(Command):
    reason: str
    name: ClassVar[str] = "suspend"


@dataclass(frozen=True)
class Resume(Command):
    name: ClassVar[str] = "resume"


@dataclass(frozen=True)
class Reopen(Command):
    reason: str
    name: ClassVar[str] = "reopen"


@dataclass(frozen=True)
class Acknowledge(Command):
    name: ClassVar[str] = "acknowledge"


@dataclass(frozen=True)
class RequestCheck(Command):
    """A dispatcher asks a member to check a case raised by an alarm or an SOS on site (紧急核实):
    the member's terminal is sent a `check` notice saying what to check (the caller fills it in:
    cases.checks.what_to_check), and only a terminal asked may answer."""
    terminal_id: str                # who is to check (the caller checks it names a member it may send)
    sensor_id: str | None = None    # an alarm's case: the alarm to check (the newest raised)
    alarm_id: str | None = None
    sos_terminal_id: str | None = None   # an SOS's case: who raised it, and where they were last
    sos_name: str | None = None
    sos_lat: float | None = None
    sos_lon: float | None = None
    sos_at: str | None = None       # ISO 8601: that position's time
    reason: str = ""                # anything the dispatcher adds ("smoke seen from the street")
    name: ClassVar[str] = "request_check"

    def target(self) -> dict[str, Any]:
        """What to check, as the event and the notice carry it (what is known)."""
        named = {"sensor_id": self.sensor_id, "alarm_id": self.alarm_id, "sos_terminal_id": self.sos_terminal_id,
                 "sos_name": self.sos_name, "sos_lat": self.sos_lat, "sos_lon": self.sos_lon, "sos_at": self.sos_at}
        return {k: v for k, v in named.items() if v is not None}


@dataclass(frozen=True)
class CheckAnswer(Command):
    """A member's answer to a check request (their terminal's …/alarm/check): confirmed, false alarm
    or need help, with a note and photos."""
    outcome: str                    # telemetry.kinds.alarm_check.OUTCOMES
    note: str = ""
    photo_refs: tuple[str, ...] = ()
    sensor_id: str | None = None    # what the answer named besides the case, kept with it
    alarm_id: str | None = None
    name: ClassVar[str] = "check"


@dataclass(frozen=True)
class OfferExpired(Command):
    """The engine: the member it was offered to did not accept in time (back to registration)."""
    reason: str
    name: ClassVar[str] = "offer_expired"


@dataclass(frozen=True)
class Escalate(Command):
    """The escalation engine: a ladder step fired (the case's state does not change)."""
    stage_seq: int
    step: int
    repeat: int
    level: str                      # an org Level value: "grid" warns the grid itself
    org_code: str                   # the org unit notified
    name: ClassVar[str] = "escalate"
