"""The review of a member's registration (采集登记) as a pure state machine:
`decide(review, command, reviewer) -> Decided(review', events) | Refusal(code, reason)`.

pending → approved (as submitted, or edited by the reviewer) | returned (a reason: not empty, at most
MAX_REASON characters, one line). Nothing else moves: an approved or returned submission is never
decided again, and nobody reviews their own registration. No clock, database or MQTT here: the
review queue (ledger.submissions) stores the outcome, applies an approval to the ledger in the same
transaction, and stamps the time.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from core import freetext
from core.ledger import SubmissionState

MAX_REASON = 200
_REASON = freetext.Kind("reason", MAX_REASON)


@dataclass(frozen=True)
class Review:
    """Where a submission's review stands."""
    submission_id: str
    member_id: str                              # who registered it
    state: SubmissionState = SubmissionState.PENDING
    reviewed_by: str | None = None
    reason: str | None = None                   # why it was sent back
    edited: bool = False                        # approved with the reviewer's edits


@dataclass(frozen=True)
class Approve:
    """Approve as submitted, or with the reviewer's `edited_fields` laid over the submitted ones."""
    edited_fields: Mapping | None = None


@dataclass(frozen=True)
class SendBack:
    reason: str


@dataclass(frozen=True)
class Approved:
    submission_id: str
    reviewer: str
    edited_fields: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class SentBack:
    submission_id: str
    reviewer: str
    reason: str


Command = Approve | SendBack
Event = Approved | SentBack


@dataclass(frozen=True)
class Decided:
    review: Review
    events: tuple[Event, ...]

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True)
class Refusal:
    code: str       # already_decided, no_reviewer, own_submission, empty_edit, no_reason, bad_reason
    reason: str

    def __bool__(self) -> bool:
        return False


def _who_refuses(review: Review, reviewer: str) -> Refusal | None:
    if review.state is not SubmissionState.PENDING:
        return Refusal("already_decided", f"submission {review.submission_id} is {review.state.value} already"
                                          f" (by {review.reviewed_by}); it is not decided twice")
    if not reviewer or not reviewer.strip():
        return Refusal("no_reviewer", "a decision names its reviewer")
    if reviewer == review.member_id:
        return Refusal("own_submission", "nobody reviews their own registration")
    return None


def _approve(review: Review, command: Approve, reviewer: str) -> Decided | Refusal:
    edits = dict(command.edited_fields or {})
    if command.edited_fields is not None and not edits:
        return Refusal("empty_edit", "an edit-and-approve changes at least one field (or approve as submitted)")
    decided = replace(review, state=SubmissionState.APPROVED, reviewed_by=reviewer, edited=bool(edits))
    return Decided(decided, (Approved(review.submission_id, reviewer, edits),))


def _send_back(review: Review, command: SendBack, reviewer: str) -> Decided | Refusal:
    reason = command.reason.strip() if isinstance(command.reason, str) else ""
    if not reason:
        return Refusal("no_reason", "sending a registration back says why (the member reads it)")
    problem = freetext.problem(reason, _REASON)
    if problem:
        return Refusal("bad_reason", f"the reason: {problem}")
    decided = replace(review, state=SubmissionState.RETURNED, reviewed_by=reviewer, reason=reason)
    return Decided(decided, (SentBack(review.submission_id, reviewer, reason),))


def decide(review: Review, command: Command, reviewer: str) -> Decided | Refusal:
    """The review after `reviewer` gives `command`, with its events, or why not (nothing changes)."""
    refused = _who_refuses(review, reviewer)
    if refused is not None:
        return refused
    if isinstance(command, Approve):
        return _approve(review, command, reviewer)
    if isinstance(command, SendBack):
        return _send_back(review, command, reviewer)
    return Refusal("unknown_command", f"{type(command).__name__} is not a review's command")
