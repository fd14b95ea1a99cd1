"""ledger.review: the review of a member's registration as a pure state machine. pending moves to
approved (as submitted or edited) or returned (with a reason); nothing else moves, and a refusal
changes nothing."""
from __future__ import annotations

import pytest

from core.ledger import SubmissionState
from ledger import review
from ledger.review import MAX_REASON, Approve, Approved, Review, SendBack, SentBack, decide

PENDING = Review("sub-1", member_id="M-0001")


def test_approving_as_submitted_moves_pending_to_approved_with_one_event():
    outcome = decide(PENDING, Approve(), "reviewer-li")
    assert outcome
    assert outcome.review.state is SubmissionState.APPROVED
    assert outcome.review.reviewed_by == "reviewer-li" and outcome.review.edited is False
    assert outcome.events == (Approved("sub-1", "reviewer-li", {}),)


def test_approving_with_edits_records_the_edits():
    outcome = decide(PENDING, Approve({"name": "王芳"}), "reviewer-li")
    assert outcome.review.state is SubmissionState.APPROVED and outcome.review.edited is True
    assert outcome.events[0].edited_fields == {"name": "王芳"}


def test_an_edit_that_changes_nothing_is_refused():
    outcome = decide(PENDING, Approve({}), "reviewer-li")
    assert not outcome and outcome.code == "empty_edit"


def test_sending_back_moves_pending_to_returned_with_the_reason_trimmed():
    outcome = decide(PENDING, SendBack("  门牌号不对，请核实  "), "reviewer-li")
    assert outcome.review.state is SubmissionState.RETURNED
    assert outcome.review.reason == "门牌号不对，请核实"
    assert outcome.events == (SentBack("sub-1", "reviewer-li", "门牌号不对，请核实"),)


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_sending_back_without_a_reason_is_refused(reason):
    outcome = decide(PENDING, SendBack(reason), "reviewer-li")
    assert not outcome and outcome.code == "no_reason"


def test_a_reason_of_the_longest_length_passes_and_one_more_is_refused():
    assert decide(PENDING, SendBack("x" * MAX_REASON), "reviewer-li")
    outcome = decide(PENDING, SendBack("x" * (MAX_REASON + 1)), "reviewer-li")
    assert not outcome and outcome.code == "bad_reason" and str(MAX_REASON) in outcome.reason


def test_a_reason_with_a_control_character_or_a_line_break_is_refused():
    assert decide(PENDING, SendBack("wrong\u202ehouse"), "reviewer-li").code == "bad_reason"
    assert decide(PENDING, SendBack("wrong\nhouse"), "reviewer-li").code == "bad_reason"


@pytest.mark.parametrize("state", [SubmissionState.APPROVED, SubmissionState.RETURNED])
@pytest.mark.parametrize("command", [Approve(), Approve({"name": "王芳"}), SendBack("again")])
def test_a_decided_submission_is_never_decided_again(state, command):
    decided = Review("sub-1", "M-0001", state, reviewed_by="reviewer-li", reason="r")
    outcome = decide(decided, command, "reviewer-zhang")
    assert not outcome and outcome.code == "already_decided"
    assert "reviewer-li" in outcome.reason


@pytest.mark.parametrize("reviewer", ["", "  "])
def test_a_decision_names_its_reviewer(reviewer):
    assert decide(PENDING, Approve(), reviewer).code == "no_reviewer"


def test_nobody_reviews_their_own_registration():
    assert decide(PENDING, Approve(), "M-0001").code == "own_submission"
    assert decide(PENDING, SendBack("no"), "M-0001").code == "own_submission"


def test_an_unknown_command_is_refused():
    assert decide(PENDING, "approve", "reviewer-li").code == "unknown_command"


def test_a_refusal_leaves_the_review_as_it_was():
    before = Review("sub-1", "M-0001")
    decide(before, SendBack(""), "reviewer-li")
    assert before == review.Review("sub-1", "M-0001") and before.state is SubmissionState.PENDING
