"""The basic-data page's one command (dashboard/pages/ledger.py): a resident's ID number and phone
seen in full, through the command bus like every write of the screens (the bus authorizes the
role and the resident's grid; this command refuses without a reason, checks the viewer's
Permission.UNMASK grant for that grid inside its transaction and writes the audit row: who, when,
which resident, the reason, the grid, and which fields were opened, never their values).

Who works on a community's ledger (`LEDGER_ROLES`): leaders and admins of an org unit. Dispatchers
and wall viewers never see personal data on the ledger's page."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import ClassVar

import psycopg2

from core import freetext
from core.catalogue import AuditAction
from core.ledger import SUBMISSION_KIND_LABELS, Permission, SubmissionKind, SubmissionState
from core.roles import UserRole
from dashboard.commands import Action, Commands, Refused, Target, Written, write_audit
from ledger import grants, privacy, review, submissions
from ledger import reads as ledger_reads
from ledger.model import Refused as LedgerRefused

LEDGER_ROLES = frozenset({UserRole.LEADER, UserRole.ADMIN})
UNMASK = Action(AuditAction.LEDGER_UNMASK, LEDGER_ROLES)


@dataclass(frozen=True)
class UnmaskResident:
    """See a resident's ID number and phone in full (an OwnTransaction of the bus: its audit row
    carries the reason in the trail's reason column). Refused without a reason, for a resident
    outside the viewer's scope (the bus, by the resident's grid), or without UNMASK over that grid."""
    action: ClassVar[Action] = UNMASK
    resident_id: int
    reason: str
    sealer: privacy.Sealer | None = field(repr=False, compare=False)

    @property
    def target_key(self) -> str:
        return f"resident:{self.resident_id}"

    def locate(self, commands: Commands) -> Target | None:
        reason = (self.reason or "").strip()
        if not reason:
            raise Refused("type the reason for seeing this resident's personal data in full")
        if len(reason) > ledger_reads.UNMASK_REASON_MAX:
            raise Refused(f"a reason has at most {ledger_reads.UNMASK_REASON_MAX} characters")
        if problem := freetext.problem(reason, freetext.LINE):
            raise Refused(f"the reason {problem}")
        found = commands.one("select grid_code from residents where resident_id = %s "
                             "and (moved_out is null or moved_out > current_date)", (self.resident_id,))
        return Target(self.target_key, found["grid_code"].strip(), self.target_key) if found else None

    def run(self, commands: Commands, who, target: Target, source_address: str | None) -> Written:
        if self.sealer is None:
            raise Refused("the ledger's key is not configured here (GCC_LEDGER_KEY)")
        conn = psycopg2.connect(commands.dsn, connect_timeout=5, application_name="gcc-dashboard")
        try:
            with conn, conn.cursor() as cur:
                if not grants.holds(cur, who.user, Permission.UNMASK, target.scope_code):
                    raise Refused(f"{who.user} holds no grant to see personal data in full for {target.scope_code}")
                values = ledger_reads.open_personal(cur, self.sealer, self.resident_id)
                write_audit(cur, who, UNMASK.key, self.target_key, target.scope_code, "done", self.reason.strip(),
                            after={"fields": [k for k, v in values.items() if v is not None]},
                            source_address=source_address)
        finally:
            conn.close()
        return Written(None, None, handed=values)


# --- the review queue's decisions (dashboard/pages/ledger_review.py) --------------------------------
# A member's registration (采集登记) is decided by the community's staff at the screens (LEDGER_ROLES
# over the submission's grid), never by a member: the grid supervisor (网格监督员) registers and checks
# in the field but reviews nothing, and nobody decides their own registration (ledger.review).
APPROVE = Action(AuditAction.LEDGER_APPROVE, LEDGER_ROLES)
SEND_BACK = Action(AuditAction.LEDGER_SEND_BACK, LEDGER_ROLES)


def _submission_key(submission_id) -> str:
    return f"submission:{submission_id}"


def _locate_submission(commands: Commands, submission_id) -> Target | None:
    """The submission's grid (the bus authorizes the reviewer for it); Refused for an id that is not
    a UUID (a crafted request), None for one that does not exist."""
    try:
        key = str(uuid.UUID(str(submission_id)))
    except ValueError:
        raise Refused(f"{str(submission_id)[:60]!r} is not a registration's id") from None
    found = commands.one("select grid_code, kind, member_id from ledger_submissions where submission_id = %s",
                         (key,))
    if found is None:
        return None
    kind = SUBMISSION_KIND_LABELS[SubmissionKind(found["kind"])]
    return Target(_submission_key(key), found["grid_code"].strip(), f"{kind} · {found['member_id']}")


def _refused_by_queue(refused: LedgerRefused) -> Refused:
    """The queue's refusal (already_decided, out_of_scope, bad_id_number, …) in the bus's words: its
    code first, so a screen and the audit trail can tell a stale decision from a bad edit."""
    return Refused(str(refused))


@dataclass(frozen=True)
class ApproveSubmission:
    """Approve a pending registration, as submitted (`edited_fields` None) or with the reviewer's
    edits laid over it: the ledger changes in the bus's transaction (ledger.submissions.approve,
    limited to the reviewer's scope again inside it), with the audit row (who, the submission, the
    record made, the names of the fields edited; never their values). A second reviewer's late
    decision is refused already_decided."""
    action: ClassVar[Action] = APPROVE
    submission_id: str
    edited_fields: dict | None
    sealer: privacy.Sealer | None = field(repr=False, compare=False)

    @property
    def target_key(self) -> str:
        return _submission_key(self.submission_id)

    def locate(self, commands: Commands) -> Target | None:
        if self.edited_fields is not None and not isinstance(self.edited_fields, dict):
            raise Refused("the edited fields are a form's fields")
        return _locate_submission(commands, self.submission_id)

    def write(self, cur, who, now, target: Target) -> Written:
        if self.sealer is None:
            raise Refused("the ledger's key is not configured here (GCC_LEDGER_KEY)")
        try:
            record_kind, record_id = submissions.approve(cur, self.sealer, self.submission_id, who.user,
                                                         self.edited_fields, scope_code=who.scope_code)
        except LedgerRefused as refused:
            raise _refused_by_queue(refused) from None
        edited = sorted(self.edited_fields or ())
        return Written({"state": SubmissionState.PENDING.value},
                       {"state": SubmissionState.APPROVED.value, "record": f"{record_kind.value}:{record_id}",
                        "edited": edited})


@dataclass(frozen=True)
class SendBackSubmission:
    """Send a pending registration back to its member with a reason (required, one line, at most
    ledger.review.MAX_REASON characters; the member reads it on the phone). Nothing in the ledger
    changes; the audit row carries the reason."""
    action: ClassVar[Action] = SEND_BACK
    submission_id: str
    reason: str

    @property
    def target_key(self) -> str:
        return _submission_key(self.submission_id)

    def locate(self, commands: Commands) -> Target | None:
        reason = self.reason.strip() if isinstance(self.reason, str) else ""
        if not reason:
            raise Refused("type the reason the registration goes back (the member reads it)")
        if len(reason) > review.MAX_REASON:
            raise Refused(f"a reason has at most {review.MAX_REASON} characters")
        return _locate_submission(commands, self.submission_id)

    def write(self, cur, who, now, target: Target) -> Written:
        try:
            submissions.send_back(cur, self.submission_id, who.user, self.reason, scope_code=who.scope_code)
        except LedgerRefused as refused:
            raise _refused_by_queue(refused) from None
        return Written({"state": SubmissionState.PENDING.value},
                       {"state": SubmissionState.RETURNED.value, "reason": self.reason.strip()})
