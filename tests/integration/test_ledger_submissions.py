"""ledger.submissions against the real database: a member's registration waits in its community's
queue (masked) until a reviewer approves it — as submitted or edited — and then is in the ledger
with history naming the member, the reviewer and the submission; sent back it keeps its reason and
changes nothing; a repeated submit is stored once; duplicates are flagged, not refused; a refusal
half-way through an approval leaves the ledger and the queue as they were."""
from __future__ import annotations

import threading
import uuid
from datetime import date, datetime, timezone

import psycopg2
import pytest

from core.ledger import (
    ChangeAction,
    Channel,
    Gender,
    HouseUse,
    RecordKind,
    Registration,
    Relation,
    SubmissionKind,
    SubmissionState,
    Tag,
    ThingKind,
    ThingState,
)
from ledger import privacy, store, submissions
from ledger.model import Refused, Thing
from ledger.privacy import ID_NUMBER, PHONE

from .test_ledger_store import a_house, a_resident, clear_anywhere, conn, fresh_id, fresh_phone, plot, sealer

__all__ = ["conn", "plot", "sealer"]      # the fixtures this module shares with test_ledger_store
BORN = date(1988, 6, 15)
REVIEWER = "reviewer-t-ldg"


def member(plot) -> str:
    return f"{plot.tag}-M0001"


def send(cur, plot, sealer, kind: SubmissionKind, fields: dict, submission_id: str | None = None,
         target_kind: RecordKind | None = None, target_id=None) -> str:
    """A submission from the plot's member, as the ingest stores it; its id."""
    submission_id = submission_id or str(uuid.uuid4())
    assert submissions.submit(cur, sealer, submission_id, kind, plot.grid_code, plot.community_code,
                              f"T{plot.grid_code}-1", member(plot), "dev-1", datetime.now(timezone.utc),
                              target_kind, target_id, fields, ["photo-1"])
    return submission_id


def newcomer(plot, house_id: int, **fields) -> dict:
    return {"house_id": house_id, "household_id": None, "relation": Relation.OTHER.value,
            "name": f"{plot.tag}李娜", "gender": Gender.FEMALE.value, "birth_date": BORN.isoformat(),
            "id_number": fresh_id(BORN), "phone": fresh_phone(), "registration": Registration.FLOATING.value,
            "moved_in": "2026-11-01", "tags": [Tag.LOW_INCOME.value], **fields}


def state_of(cur, submission_id: str) -> tuple:
    cur.execute("select state, reviewed_by, reason, target_kind, target_id, reviewed_at is not null"
                " from ledger_submissions where submission_id = %s", (submission_id,))
    return cur.fetchone()


def test_an_approved_new_resident_is_in_the_ledger_with_history_naming_member_and_reviewer(conn, plot, sealer):
    with conn, conn.cursor() as cur:
        house_id = a_house(cur, plot)
        fields = newcomer(plot, house_id)
        submission_id = send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, fields)
    with conn, conn.cursor() as cur:
        queue = [s for s in submissions.pending(cur, plot.community_code, 500) if s["submission_id"] == submission_id]
        assert clear_anywhere(cur, fields["id_number"]) == [] and clear_anywhere(cur, fields["phone"]) == []
    assert queue and queue[0]["fields"]["id_number"] == privacy.mask_id_number(fields["id_number"])
    assert queue[0]["fields"]["phone"] == privacy.mask_phone(fields["phone"]) and queue[0]["duplicates"] == []
    with conn, conn.cursor() as cur:
        kind, resident_id = submissions.approve(cur, sealer, submission_id, REVIEWER)
        assert kind is RecordKind.RESIDENT
        assert state_of(cur, submission_id) == (SubmissionState.APPROVED.value, REVIEWER, None,
                                                RecordKind.RESIDENT.value, resident_id, True)
        cur.execute("select r.relation, r.registration, r.grid_code, h.head_id, h.house_id, r.id_number_index"
                    " from residents r join households h using (household_id) where resident_id = %s",
                    (int(resident_id),))
        relation, registration, grid_code, head_id, in_house, index = cur.fetchone()
        history = store.history(cur, RecordKind.RESIDENT, resident_id)
        assert submission_id not in [s["submission_id"] for s in submissions.pending(cur, plot.community_code, 500)]
        assert clear_anywhere(cur, fields["id_number"]) == [] and clear_anywhere(cur, fields["phone"]) == []
    assert (relation, registration, grid_code) == (Relation.HEAD.value, Registration.FLOATING.value, plot.grid_code)
    assert head_id == int(resident_id) and in_house == house_id       # a new household, the newcomer its head
    assert bytes(index) == sealer.index(ID_NUMBER, fields["id_number"])
    assert [(c.action, c.changed_by, c.channel, c.approved_by, c.submission_id) for c in history] == [
        (ChangeAction.CREATE, member(plot), Channel.HANDHELD, REVIEWER, submission_id)]
    assert history[0].after["tags"] == [Tag.LOW_INCOME.value]


def test_edit_and_approve_applies_the_reviewer_s_fields_and_keeps_them_sealed(conn, plot, sealer):
    phone = fresh_phone()
    with conn, conn.cursor() as cur:
        fields = newcomer(plot, a_house(cur, plot))
        submission_id = send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, fields)
    with conn, conn.cursor() as cur:
        _, resident_id = submissions.approve(cur, sealer, submission_id, REVIEWER,
                                             {"name": f"{plot.tag}李丽娜", "phone": f"+86 {phone}"})
        cur.execute("select name, phone_masked from residents where resident_id = %s", (int(resident_id),))
        assert cur.fetchone() == (f"{plot.tag}李丽娜", privacy.mask_phone(phone))
        cur.execute("select payload -> 'reviewer_edits' from ledger_submissions where submission_id = %s",
                    (submission_id,))
        edits = cur.fetchone()[0]
        assert clear_anywhere(cur, phone) == []
        shown = submissions.one(cur, submission_id, plot.community_code)
    assert shown["state"] == SubmissionState.APPROVED.value and shown["reviewed_by"] == REVIEWER
    assert shown["reviewer_edits"]["phone"] == privacy.mask_phone(phone)
    assert shown["fields"]["id_number"] == privacy.mask_id_number(fields["id_number"])
    with conn, conn.cursor() as cur:
        [change] = store.history(cur, RecordKind.RESIDENT, resident_id)
    assert edits["name"] == f"{plot.tag}李丽娜" and sealer.open_field(PHONE, edits["phone"]) == phone
    assert change.approved_by == REVIEWER and sealer.open_field(PHONE, change.after["phone"]) == phone


def test_a_submission_sent_back_keeps_its_reason_changes_nothing_and_is_not_decided_again(conn, plot, sealer):
    with conn, conn.cursor() as cur:
        submission_id = send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, newcomer(plot, a_house(cur, plot)))
    with conn, conn.cursor() as cur, pytest.raises(Refused) as refused:
        submissions.send_back(cur, submission_id, REVIEWER, "  ")
    assert refused.value.code == "no_reason"
    with conn, conn.cursor() as cur:
        submissions.send_back(cur, submission_id, REVIEWER, "门牌号不对，请核实")
        assert state_of(cur, submission_id)[:3] == (SubmissionState.RETURNED.value, REVIEWER, "门牌号不对，请核实")
        cur.execute("select count(*) from residents where starts_with(name, %s)", (plot.tag,))
        assert cur.fetchone()[0] == 0
    for decide in (lambda cur: submissions.approve(cur, sealer, submission_id, "reviewer-2"),
                   lambda cur: submissions.send_back(cur, submission_id, "reviewer-2", "again")):
        with conn, conn.cursor() as cur, pytest.raises(Refused) as refused:
            decide(cur)
        assert refused.value.code == "already_decided"


def test_a_repeated_submit_is_stored_once(conn, plot, sealer):
    with conn, conn.cursor() as cur:
        fields = newcomer(plot, a_house(cur, plot))
        submission_id = send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, fields)
        again = submissions.submit(cur, sealer, submission_id, SubmissionKind.NEW_RESIDENT, plot.grid_code,
                                   plot.community_code, "T-1", member(plot), "dev-1", datetime.now(timezone.utc),
                                   None, None, fields, [])
        cur.execute("select count(*) from ledger_submissions where submission_id = %s", (submission_id,))
        assert again is False and cur.fetchone()[0] == 1


def test_duplicates_are_flagged_not_refused(conn, plot, sealer):
    """Same ID number as a resident, same name in the same house, and as another pending submission."""
    with conn, conn.cursor() as cur:
        house_id = a_house(cur, plot)
        household_id = store.add_household(cur, house_id, plot.actor())
        known = a_resident(plot, household_id, birth_date=BORN)
        known_id = store.add_resident(cur, sealer, known, plot.actor())
        first = send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT,
                     newcomer(plot, house_id, id_number=known.id_number, name=known.name))
        twin = fresh_id(BORN)
        second = send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, newcomer(plot, house_id, id_number=twin))
        third = send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, newcomer(plot, house_id, id_number=twin))
        queue = {s["submission_id"]: s["duplicates"] for s in submissions.pending(cur, plot.community_code, 500)}
        preview = submissions.duplicates_of(cur, sealer, {"kind": SubmissionKind.NEW_RESIDENT,
                                                          "fields": {"id_number": known.id_number.lower()}})
    assert {(d["why"], d["record_id"]) for d in queue[first]} == {("same_id_number", str(known_id)),
                                                                  ("same_name_in_house", str(known_id))}
    assert queue[second] == []
    assert queue[third] == [{"why": "pending_same_id_number", "submission_id": second}]
    assert preview == [{"why": "same_id_number", "record_kind": RecordKind.RESIDENT.value, "record_id": str(known_id)},
                       {"why": "pending_same_id_number", "submission_id": first}]     # an ID number in clear too


@pytest.mark.parametrize(("fields", "code", "words"), [
    ({"id_number": "350102198806150000"}, "bad_id_number", "check digit"),
    ({"phone": "phone"}, "bad_phone", "digits"),
    ({"religion": "none"}, "bad_payload", "unknown religion"),
    ({"relation": "cousin"}, "bad_value", "relation 'cousin' is not one of head"),
    ({"birth_date": "15/06/1988"}, "bad_value", "not a date"),
    ({"name": None}, "bad_payload", "name is required"),
    ({"tags": ["vip"]}, "bad_value", "tag 'vip'"),
    ({"house_id": "501a"}, "bad_value", "house_id '501a' is not a ledger id"),
])
def test_a_bad_submission_is_refused_with_its_reason_and_not_stored(conn, plot, sealer, fields, code, words):
    with conn, conn.cursor() as cur:
        house_id = a_house(cur, plot)
    submission_id = str(uuid.uuid4())
    with conn, conn.cursor() as cur, pytest.raises(Refused) as refused:
        send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, {**newcomer(plot, house_id), **fields}, submission_id)
    assert refused.value.code == code and words in str(refused.value)
    with conn.cursor() as cur, pytest.raises(Refused, match="missing birth_date, gender, name"):
        send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, {"house_id": house_id})
    with conn.cursor() as cur, pytest.raises(Refused, match="damage report's state is damaged or missing"):
        send(cur, plot, sealer, SubmissionKind.THING_DAMAGED, {"thing_id": "x", "state": ThingState.GOOD.value})
    conn.rollback()
    with conn.cursor() as cur, pytest.raises(Refused, match="is not in community"):
        submissions.submit(cur, sealer, submission_id, SubmissionKind.MOVED_OUT, plot.grid_code, "350102999999", "T-1",
                           member(plot), None, datetime.now(timezone.utc), None, None,
                           {"resident_id": 1, "moved_out": "2026-12-01"}, [])
    with conn.cursor() as cur:
        cur.execute("select count(*) from ledger_submissions where submission_id = %s", (submission_id,))
        assert cur.fetchone()[0] == 0


def test_a_refusal_half_way_through_an_approval_leaves_ledger_and_queue_as_they_were(conn, plot, sealer):
    with conn, conn.cursor() as cur:
        house_id, other_house = a_house(cur, plot), a_house(cur, plot, "502")
        elsewhere = store.add_household(cur, other_house, plot.actor())
        submission_id = send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, newcomer(plot, house_id))
    with conn, conn.cursor() as cur:
        with pytest.raises(Refused) as refused:
            submissions.approve(cur, sealer, submission_id, REVIEWER, {"household_id": elsewhere})
        assert refused.value.code == "bad_value"
        with pytest.raises(Refused) as refused:
            submissions.approve(cur, sealer, submission_id, REVIEWER, {"birth_date": "1988-06-16"})
        assert refused.value.code == "bad_id_number"       # add_household ran, then the check refused
        cur.execute("select count(*) from households where house_id = %s", (house_id,))
        assert cur.fetchone()[0] == 0
        assert state_of(cur, submission_id)[0] == SubmissionState.PENDING.value


def test_every_other_kind_of_registration_changes_its_record_once_approved(conn, plot, sealer):
    """moved out, household changed, house use changed, new shop, part damaged."""
    shop_phone = fresh_phone()
    with conn, conn.cursor() as cur:
        house_id = a_house(cur, plot)
        household_id = store.add_household(cur, house_id, plot.actor())
        head_id = store.add_resident(cur, sealer, a_resident(plot, household_id), plot.actor())
        store.set_head(cur, household_id, head_id, plot.actor())
        spouse_id = store.add_resident(cur, sealer, a_resident(plot, household_id, relation=Relation.OTHER),
                                       plot.actor())
        thing_id = store.add_thing(cur, Thing(f"{plot.tag}-cover", ThingKind.MANHOLE_COVER, plot.grid_code,
                                              plot.lon, plot.lat, "市政"), plot.actor())
        sent = [
            send(cur, plot, sealer, SubmissionKind.HOUSEHOLD_CHANGED,
                 {"household_id": household_id, "head_id": spouse_id,
                  "relations": {str(spouse_id): Relation.HEAD.value, str(head_id): Relation.SPOUSE.value}},
                 target_kind=RecordKind.HOUSEHOLD, target_id=household_id),
            send(cur, plot, sealer, SubmissionKind.MOVED_OUT, {"resident_id": str(head_id), "moved_out": "2026-12-01"},
                 target_kind=RecordKind.RESIDENT, target_id=head_id),
            send(cur, plot, sealer, SubmissionKind.HOUSE_USE_CHANGED,
                 {"house_id": house_id, "use": HouseUse.RENTED.value, "area_m2": 72.5}),
            send(cur, plot, sealer, SubmissionKind.NEW_SHOP,
                 {"building_id": plot.building_id, "name": f"{plot.tag}面馆", "kind": "restaurant", "licence": None,
                  "contact_name": "赵六", "contact_phone": shop_phone, "fire_key_unit": True,
                  "lon": plot.lon, "lat": plot.lat}),
            send(cur, plot, sealer, SubmissionKind.THING_DAMAGED,
                 {"thing_id": thing_id, "state": ThingState.MISSING.value, "note": "井盖丢失"}),
        ]
    with conn, conn.cursor() as cur:
        decided = [submissions.approve(cur, sealer, s, REVIEWER) for s in sent]
        cur.execute("select head_id from households where household_id = %s", (household_id,))
        assert cur.fetchone()[0] == spouse_id
        cur.execute("select resident_id, relation, moved_out from residents where household_id = %s order by 1",
                    (household_id,))
        assert cur.fetchall() == [(head_id, Relation.SPOUSE.value, date(2026, 12, 1)),
                                  (spouse_id, Relation.HEAD.value, None)]
        cur.execute("select use, area_m2 from houses where house_id = %s", (house_id,))
        assert cur.fetchone() == (HouseUse.RENTED.value, 72.5)
        cur.execute("select grid_code, fire_key_unit, contact_phone_masked from units where unit_id = %s",
                    (decided[3][1],))
        assert cur.fetchone() == (plot.grid_code, True, privacy.mask_phone(shop_phone))
        cur.execute("select state from things where thing_id = %s", (thing_id,))
        assert cur.fetchone()[0] == ThingState.MISSING.value
        assert clear_anywhere(cur, shop_phone) == []
        changes = [store.history(cur, kind, record_id)[-1] for kind, record_id in decided]
    assert [kind for kind, _ in decided] == [RecordKind.HOUSEHOLD, RecordKind.RESIDENT, RecordKind.HOUSE,
                                             RecordKind.UNIT, RecordKind.THING]
    assert [(c.submission_id, c.approved_by, c.channel) for c in changes] == [
        (s, REVIEWER, Channel.HANDHELD) for s in sent]


def test_the_ingest_submits_and_the_screens_review_and_delete_under_their_own_database_roles(stack, plot, sealer):
    """Least privilege: the ingest's role may store a registration (and read what flags duplicates),
    the dashboard's may approve it, send one back and run the moved-out deletion."""
    ingest, dashboard = (psycopg2.connect(stack.app_settings(app).pg_dsn) for app in ("ingest", "dashboard"))
    try:
        with dashboard, dashboard.cursor() as cur:
            house_id = a_house(cur, plot)
        with ingest, ingest.cursor() as cur:
            resident = send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, newcomer(plot, house_id, moved_in=None))
            shop = send(cur, plot, sealer, SubmissionKind.NEW_SHOP,
                        {"building_id": plot.building_id, "name": f"{plot.tag}茶馆", "kind": "teahouse",
                         "contact_phone": fresh_phone()})       # no point from the phone: the building's
            returned = send(cur, plot, sealer, SubmissionKind.HOUSE_USE_CHANGED,
                            {"house_id": house_id, "use": HouseUse.VACANT.value})
        with dashboard, dashboard.cursor() as cur:
            _, resident_id = submissions.approve(cur, sealer, resident, REVIEWER)
            _, unit_id = submissions.approve(cur, sealer, shop, REVIEWER)
            cur.execute("select lon, lat, grid_code from units where unit_id = %s", (unit_id,))
            assert cur.fetchone() == (plot.lon, plot.lat, plot.grid_code)
            submissions.send_back(cur, returned, REVIEWER, "房屋仍在自住")
            store.move_out(cur, int(resident_id), date(1970, 2, 1), plot.actor())
        with dashboard, dashboard.cursor() as cur:
            assert store.delete_moved_out(cur, date(1970, 6, 1), plot.actor("deletion", Channel.JOB)) == 1
    finally:
        ingest.close()
        dashboard.close()


def test_of_two_reviewers_deciding_one_submission_at_once_the_first_to_commit_wins(conn, plot, sealer, settings):
    with conn, conn.cursor() as cur:
        submission_id = send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, newcomer(plot, a_house(cur, plot)))
    second = psycopg2.connect(settings.pg_dsn)
    outcome: list = []

    def second_reviewer() -> None:
        try:
            with second, second.cursor() as cur:
                submissions.send_back(cur, submission_id, "reviewer-2", "重复登记")
            outcome.append("sent back")
        except Refused as refused:
            outcome.append(refused.code)

    try:
        with conn, conn.cursor() as cur:
            submissions.approve(cur, sealer, submission_id, REVIEWER)
            racer = threading.Thread(target=second_reviewer)
            racer.start()          # it waits for the first's row lock, or comes after its commit: decided either way
        racer.join()
    finally:
        second.close()
    assert outcome == ["already_decided"]
    with conn.cursor() as cur:
        assert state_of(cur, submission_id)[:2] == (SubmissionState.APPROVED.value, REVIEWER)


def test_a_reviewer_decides_only_within_their_scope(conn, plot, sealer, city):
    other = next(c.code for c in city.communities if c.code != plot.community_code)
    with conn, conn.cursor() as cur:
        submission_id = send(cur, plot, sealer, SubmissionKind.NEW_RESIDENT, newcomer(plot, a_house(cur, plot)))
    for decide in (lambda cur: submissions.approve(cur, sealer, submission_id, REVIEWER, scope_code=other),
                   lambda cur: submissions.send_back(cur, submission_id, REVIEWER, "no", scope_code=other)):
        with conn, conn.cursor() as cur, pytest.raises(Refused) as refused:
            decide(cur)
        assert refused.value.code == "out_of_scope"
    with conn, conn.cursor() as cur:
        assert submissions.one(cur, submission_id, other) is None
        assert submissions.one(cur, submission_id, plot.community_code)["state"] == SubmissionState.PENDING.value
        street = plot.community_code[:9]
        submissions.send_back(cur, submission_id, REVIEWER, "请补充照片", scope_code=street)
        assert state_of(cur, submission_id)[0] == SubmissionState.RETURNED.value
