"""Case notices and announcements: what the command center tells members' terminals (downlink).

    gcc/v1/terminal/{terminal_id}/notice     QoS 1, MQTT v5 message expiry (a day), one JSON object

The cases engine publishes them from its outbox (`case_notices`, written in the same transaction
as the case change), so a notice is sent at least once: a terminal may see one twice after a
restart of the engine and keeps the `notice_id`s it has seen. The terminal answers on its uplink
`…/case` topic (telemetry.messages.CaseUpdate): accept a dispatched case, feedback, verify, ask
for an extension. docs/WIRE_FORMAT.md documents both.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import Enum

import orjson

NOTICE_EXPIRY_S = 24 * 3600


class NoticeKind(str, Enum):
    DISPATCHED = "dispatched"                  # you are the handler: accept (or reject) it
    ACCEPTED = "accepted"                      # your acceptance is recorded: `deadline` is the handling one
    VERIFY = "verify"                          # a case of your grid was handled: verify it on site
    REWORK = "rework"                          # its verification failed: handle it again (reason says what)
    REOPENED = "reopened"                      # a closed case is open again, with you as its handler
    EXTENSION_APPROVED = "extension_approved"  # your extension was approved: the deadline is later
    EXTENSION_REFUSED = "extension_refused"    # your extension was refused: the deadline stands
    ESCALATED = "escalated"                    # it is overdue and was escalated to `level`
    WITHDRAWN = "withdrawn"                    # it is no longer yours to work on (returned, refused, suspended)
    RESUMED = "resumed"                        # a suspended case of yours runs again
    CLOSED = "closed"                          # your case was closed
    CHECK = "check"                            # check this alarm or SOS on site (紧急核实) and answer on
                                               # …/alarm/check: what to check is in the body (docs/WIRE_FORMAT.md)


@dataclass(frozen=True)
class CaseNotice:
    notice_id: int
    terminal_id: str                           # the recipient (the topic's id)
    time: datetime                             # when the change happened
    kind: NoticeKind
    case_id: str
    state: str                                 # the case's state after the change
    category: str
    urgency: str
    title: str
    place: str
    lat: float | None
    lon: float | None
    deadline: datetime | None                  # the current stage's deadline, if a clock runs
    reason: str | None = None                  # why (a refusal, a failed verification, …)
    level: str | None = None                   # escalated: the org level notified

    def payload(self) -> bytes:
        body = asdict(self)
        del body["terminal_id"]                # the topic says it
        body["ts"] = body.pop("time").isoformat()
        body["kind"] = self.kind.value
        body["deadline"] = self.deadline.isoformat() if self.deadline else None
        return orjson.dumps(body)

    @classmethod
    def parse(cls, terminal_id: str, payload: bytes) -> CaseNotice:
        """A notice as a terminal reads it (ValueError, KeyError or TypeError if it is not one)."""
        body = orjson.loads(payload)
        if not isinstance(body, dict):
            raise ValueError("a notice is a JSON object")
        deadline = body.get("deadline")
        return cls(notice_id=int(body["notice_id"]), terminal_id=terminal_id,
                   time=datetime.fromisoformat(body["ts"]), kind=NoticeKind(body["kind"]),
                   case_id=str(body["case_id"]), state=str(body["state"]), category=str(body["category"]),
                   urgency=str(body["urgency"]), title=str(body.get("title") or ""),
                   place=str(body.get("place") or ""), lat=body.get("lat"), lon=body.get("lon"),
                   deadline=datetime.fromisoformat(deadline) if deadline else None,
                   reason=body.get("reason"), level=body.get("level"))


ANNOUNCEMENT_DAYS = (1, 3, 7, 30)              # how long an announcement may stay (the sender picks)


@dataclass(frozen=True)
class Announcement:
    """An announcement (通知公告) to every terminal of an org unit, on
    gcc/v1/org/{org_code}/announcement (QoS 1, MQTT v5 message expiry until `expires`). A terminal
    shows it once per `announcement_id` and sends a receipt on its `…/announcement/read` topic."""
    announcement_id: int
    org_code: str                              # the org unit it goes to (the topic's code)
    org_name: str
    time: datetime                             # when it was sent
    expires: datetime
    title: str
    body: str
    sender: str                                # who sent it, as the member reads it (a name and a role)

    def payload(self) -> bytes:
        body = asdict(self)
        body["ts"] = body.pop("time").isoformat()
        body["expires"] = self.expires.isoformat()
        return orjson.dumps(body)

    @classmethod
    def parse(cls, payload: bytes) -> Announcement:
        """An announcement as a terminal reads it (ValueError, KeyError or TypeError if it is not one)."""
        body = orjson.loads(payload)
        if not isinstance(body, dict):
            raise ValueError("an announcement is a JSON object")
        return cls(announcement_id=int(body["announcement_id"]), org_code=str(body["org_code"]),
                   org_name=str(body.get("org_name") or ""), time=datetime.fromisoformat(body["ts"]),
                   expires=datetime.fromisoformat(body["expires"]), title=str(body["title"]),
                   body=str(body["body"]), sender=str(body.get("sender") or ""))
