"""The review queue's decisions through the command bus as the screens give them (the dashboard's
own database role): a community's leader approves a registration with an edit (the ledger changed,
one audit row naming the submission, the outcome and the fields edited, never a value), a second
reviewer's late decision is refused already_decided, a leader of another community and a dispatcher
are refused (audited), a send-back needs its reason and keeps it, a bad edit is refused with its
code and leaves the registration waiting, a crafted id is refused in words."""
from __future__ import annotations

import uuid
from contextlib import closing
from datetime import date, datetime, timezone

import psycopg2
import pytest

from core.catalogue import AuditAction
from core.ledger import Gender, Registration, Relation, SubmissionKind, SubmissionState
from core.roles import UserRole
from dashboard.authz import Identity
from dashboard.commands import Commands
from dashboard.ledger_commands import ApproveSubmission, SendBackSubmission
from ledger import submissions

from .test_ledger_store import a_house, conn, fresh_id, fresh_phone, plot, sealer

__all__ = ["conn", "plot", "sealer"]      # the fixtures this module shares with test_ledger_store
BORN = date(1991, 3, 9)


@pytest.fixture
def bus(stack, city):
    """The bus as the dashboard runs it: its own database role."""
    return Commands(city, None, stack.app_settings("dashboard").pg_dsn, producer="test-review")


def _leader(plot, who: str, scope_code: str | None = None, role: UserRole = UserRole.LEADER) -> Identity:
    return Identity(f"{plot.tag}-{who}", frozenset({role}), plot.community_code if scope_code is None else scope_code)


def _registration(conn, plot, sealer) -> tuple[str, dict]:
    """A new resident registered by the plot's member in a house of the plot: (its id, its fields)."""
    with conn, conn.cursor() as cur:
        house_id = a_house(cur, plot, number=f"{uuid.uuid4().int % 900 + 100}")
        fields = {"house_id": house_id, "relation": Relation.HEAD.value, "name": f"{plot.tag}周敏",
                  "gender": Gender.FEMALE.value, "birth_date": BORN.isoformat(), "id_number": fresh_id(BORN),
                  "phone": fresh_phone(), "registration": Registration.LOCAL.value}
        submission_id = str(uuid.uuid4())
        assert submissions.submit(cur, sealer, submission_id, SubmissionKind.NEW_RESIDENT, plot.grid_code,
                                  plot.community_code, f"T{plot.grid_code}-1", f"{plot.tag}-M0001", "dev-1",
                                  datetime.now(timezone.utc), None, None, fields, [])
    return submission_id, fields


def _audit(settings, submission_id: str) -> list[tuple]:
    with closing(psycopg2.connect(settings.pg_dsn)) as db, db, db.cursor() as cur:
        cur.execute("select actor, action, outcome, coalesce(reason, ''), coalesce(after::text, '') from audit_log"
                    " where target = %s order by id", (f"submission:{submission_id}",))
        return cur.fetchall()


def _state(conn, submission_id: str) -> tuple:
    with conn, conn.cursor() as cur:
        cur.execute("select state, reviewed_by, reason from ledger_submissions where submission_id = %s",
                    (submission_id,))
        return cur.fetchone()


def test_an_edited_approval_changes_the_ledger_and_a_late_second_is_refused_already_decided(
        bus, conn, plot, sealer, settings):
    submission_id, fields = _registration(conn, plot, sealer)
    leader, other = _leader(plot, "leader"), _leader(plot, "leader2")
    done = bus.execute(leader, ApproveSubmission(submission_id, {"name": f"{plot.tag}周敏敏"}, sealer))
    assert done.ok, done.reason
    late = bus.execute(other, ApproveSubmission(submission_id, None, sealer))
    assert not late.ok and late.reason.startswith("already_decided")
    assert _state(conn, submission_id) == (SubmissionState.APPROVED.value, leader.user, None)
    with conn, conn.cursor() as cur:
        cur.execute("select name from residents r join households h using (household_id) where h.house_id = %s",
                    (fields["house_id"],))
        assert cur.fetchall() == [(f"{plot.tag}周敏敏",)]
    rows = _audit(settings, submission_id)
    assert [r[:3] for r in rows] == [(leader.user, AuditAction.LEDGER_APPROVE.value, "done"),
                                     (other.user, AuditAction.LEDGER_APPROVE.value, "refused")]
    assert '"edited": ["name"]' in rows[0][4] and "resident:" in rows[0][4]
    assert all(fields["id_number"] not in str(r) and fields["phone"] not in str(r) for r in rows)


def test_a_leader_of_another_community_and_a_dispatcher_are_refused_audited(bus, conn, plot, sealer, settings,
                                                                               city):
    submission_id, _ = _registration(conn, plot, sealer)
    elsewhere = next(g.community_code for g in city.grids if g.community_code != plot.community_code)
    stranger = _leader(plot, "stranger", elsewhere)
    dispatcher = _leader(plot, "dispatcher", role=UserRole.DISPATCHER)
    outside = bus.execute(stranger, ApproveSubmission(submission_id, None, sealer))
    forged = bus.execute(dispatcher, SendBackSubmission(submission_id, "forged"))
    assert not outside.ok and "outside" in outside.reason
    assert not forged.ok and "roles" in forged.reason
    assert _state(conn, submission_id) == (SubmissionState.PENDING.value, None, None)
    assert [r[:3] for r in _audit(settings, submission_id)] == [
        (stranger.user, AuditAction.LEDGER_APPROVE.value, "refused"),
        (dispatcher.user, AuditAction.LEDGER_SEND_BACK.value, "refused")]


def test_sending_back_needs_a_reason_and_keeps_it(bus, conn, plot, sealer, settings):
    submission_id, _ = _registration(conn, plot, sealer)
    leader = _leader(plot, "leader")
    for empty in ("", "   "):
        refused = bus.execute(leader, SendBackSubmission(submission_id, empty))
        assert not refused.ok and "reason" in refused.reason
    too_long = bus.execute(leader, SendBackSubmission(submission_id, "长" * 201))
    assert not too_long.ok and "200" in too_long.reason
    reason = "身份证号与出生日期不符，请核对"
    assert bus.execute(leader, SendBackSubmission(submission_id, reason)).ok
    assert _state(conn, submission_id) == (SubmissionState.RETURNED.value, leader.user, reason)
    assert [r[2] for r in _audit(settings, submission_id)] == ["refused", "refused", "refused", "done"]


def test_a_bad_edit_is_refused_with_its_code_and_the_registration_still_waits(bus, conn, plot, sealer):
    submission_id, fields = _registration(conn, plot, sealer)
    leader = _leader(plot, "leader")
    bad = bus.execute(leader, ApproveSubmission(submission_id, {"id_number": "350102199103091234"}, sealer))
    assert not bad.ok and bad.reason.startswith("bad_id_number")
    unknown = bus.execute(leader, ApproveSubmission(submission_id, {"salary": "1"}, sealer))
    assert not unknown.ok and unknown.reason.startswith("bad_payload")
    assert _state(conn, submission_id) == (SubmissionState.PENDING.value, None, None)
    with conn, conn.cursor() as cur:
        cur.execute("select count(*) from households where house_id = %s", (fields["house_id"],))
        assert cur.fetchone() == (0,)           # nothing of the refused approvals stayed


def test_a_crafted_submission_id_is_refused_in_words(bus, plot, sealer):
    leader = _leader(plot, "leader")
    for crafted in ("1 or 1=1", str(uuid.uuid4())):
        refused = bus.execute(leader, ApproveSubmission(crafted, None, sealer))
        assert not refused.ok and ("not a registration" in refused.reason or "does not exist" in refused.reason)


def test_an_edit_sends_only_what_the_reviewer_retyped():
    """The edit form's values against the registration as shown (masked): a mask left as it is, an
    unchanged field and the ids are no edit; an emptied optional field is cleared; a restricted tag
    the reviewer may not see is kept; a number that is not one is named."""
    from core.ledger import Tag
    from dashboard.ledger_review_view import edits_of

    shown = {"house_id": 7, "name": "周敏", "id_number": "3501**********1234", "phone": "137****7001",
             "moved_in": "2026-11-01", "tags": [Tag.COMMUNITY_CORRECTION.value, Tag.LOW_INCOME.value]}
    typed = {"house_id": "8", "name": "周敏 ", "id_number": "3501**********1234", "phone": "13700137009",
             "moved_in": "", "tags": [Tag.DISABLED.value]}
    assert edits_of(SubmissionKind.NEW_RESIDENT, shown, typed) == {
        "phone": "13700137009", "moved_in": None,
        "tags": sorted([Tag.COMMUNITY_CORRECTION.value, Tag.DISABLED.value])}
    assert edits_of(SubmissionKind.NEW_RESIDENT, shown, {"name": "周敏"}) == {}
    assert edits_of(SubmissionKind.NEW_RESIDENT, shown, {"tags": [Tag.LOW_INCOME.value]}, restricted=True) == {
        "tags": [Tag.LOW_INCOME.value]}                                   # a granted reviewer removes one
    with pytest.raises(ValueError, match="area"):
        edits_of(SubmissionKind.HOUSE_USE_CHANGED, {"house_id": 7, "use": "rented"}, {"area_m2": "八十"})
