"""A member's registration (采集登记) made offline on the phone, in headless Chromium as a phone
(360×640, touch, zh-CN) against the real device-facing service: the member opens the new-resident
form once with signal (the grid's buildings and a building's houses read and kept), goes into a
basement, fills the form in (building → house → household, name, gender, birth date, ID number,
phone, registration, relation, a care tag) and saves it; it waits in the app's outbox and nothing
reaches the server; back online it is sent, stored once in the community's review queue with the
ID number and phone sealed, and the app's list says 待审核 (to review)."""
from __future__ import annotations

from datetime import date

import pytest

from core.ledger import Gender, Registration, Relation, SubmissionKind, Tag, ThingKind, ThingState
from ledger.privacy import Sealer

from ..support import wait_for
from .handheld_browser import (  # noqa: F401 - the *_fixture names: the fixtures these tests use
    WAIT_MS,
    jpeg_file,
    phone_service_fixture,
    phones_fixture,
    registry_fixture,
)
from .ingest_helpers import owner_rows
from .test_handheld_registrations import id_number, owner_cursor, plant_home

pytestmark = pytest.mark.slow
NAME = "陈晓东"
PHONE = "13600136000"


@pytest.fixture
def home(stack, city):
    """A house of this test's own, with a household of one, in a grid whose member has a phone."""
    with_buildings = {b.grid_code for b in city.buildings}
    member = next(m for m in reversed(city.members) if m.grid_code in with_buildings)
    building = next(b for b in city.buildings if b.grid_code == member.grid_code)
    sealer = Sealer(stack.app_settings("ingest").ledger_key.get_secret_value())
    with owner_cursor(stack) as cur:
        house_id, household_id, resident_id, thing_id = plant_home(cur, sealer, building, "browser")
    yield member, building, house_id, household_id
    with owner_cursor(stack) as cur:
        cur.execute("delete from ledger_submissions where member_id = %s and target_id = any(%s)",
                    (member.member_id, [str(house_id), str(household_id), thing_id]))
        cur.execute("delete from things where thing_id = %s", (thing_id,))
        cur.execute("update households set head_id = null where house_id = %s", (house_id,))
        cur.execute("delete from residents where household_id = %s", (household_id,))
        cur.execute("delete from households where house_id = %s", (house_id,))
        cur.execute("delete from houses where house_id = %s", (house_id,))


def open_form(page, kind: SubmissionKind) -> None:
    page.locator(f"a.menu-entry[data-kind={kind.value}]").tap()
    page.locator("select[name=building]").wait_for(timeout=WAIT_MS)


def test_a_new_resident_registered_offline_is_sent_once_and_shows_to_review(stack, city, phones, registry, home):
    member, building, house_id, household_id = home
    phone = phones(member, city)
    phone.enrol(registry)
    page = phone.page
    phone.go("more")
    page.locator("a.menu-entry[href='#registration']").tap()
    open_form(page, SubmissionKind.NEW_RESIDENT)
    page.select_option("select[name=building]", building.building_id)      # read with signal: kept
    page.locator("select[name=house]").wait_for(timeout=WAIT_MS)
    page.locator("a.reg-back").tap()

    phone.context.set_offline(True)                                         # in a basement
    page.locator("#link.off").wait_for(timeout=WAIT_MS)
    open_form(page, SubmissionKind.NEW_RESIDENT)
    page.select_option("select[name=building]", building.building_id)
    page.select_option("select[name=house]", str(house_id))
    page.locator(f".reg-households button[data-value='{household_id}']").tap()
    born = date(1979, 6, 30)
    page.fill("input[name=name]", NAME)
    page.locator(f".reg-gender button[data-value={Gender.MALE.value}]").tap()
    page.fill("input[name=birth_date]", born.isoformat())
    page.fill("input[name=id_number]", id_number(born, "457"))
    page.fill("input[name=phone]", PHONE)
    page.locator(f".reg-registration button[data-value={Registration.FLOATING.value}]").tap()
    page.select_option("select[name=relation]", Relation.TENANT.value)
    page.locator(f".reg-tags button[data-value={Tag.DISABLED.value}]").tap()
    phone.shot("registration-1-new-resident-offline")
    page.locator("button.reg-save").tap()

    bar = page.locator("#outbox-bar")
    bar.get_by_text("1 waiting to send").wait_for(timeout=WAIT_MS)
    page.locator(".reg-item.waiting", has_text=NAME).wait_for(timeout=WAIT_MS)     # 待发送 on the list
    assert phone.stored("outbox") == 1
    assert owner_rows(stack, "select count(*) from ledger_submissions where member_id = %s and target_id = %s",
                      member.member_id, str(house_id)) == [(0,)]                   # nothing left the phone

    phone.context.set_offline(False)                                        # signal again: sent once
    bar.wait_for(state="hidden", timeout=WAIT_MS)
    assert (phone.stored("outbox"), phone.stored("refused")) == (0, 0)

    def stored():
        return owner_rows(stack, "select kind, payload::text from ledger_submissions where member_id = %s "
                          "and target_id = %s", member.member_id, str(house_id))
    [(kind, payload)] = wait_for(stored, 30, "the registration in the review queue")
    assert kind == SubmissionKind.NEW_RESIDENT.value and NAME in payload
    assert id_number(born, "457") not in payload and PHONE not in payload          # sealed, never in clear
    item = page.locator(".reg-item", has_text=NAME)
    item.get_by_text("待审核").wait_for(timeout=WAIT_MS)
    phone.shot("registration-2-to-review", item)
    assert page.errors == []


def test_a_new_head_and_a_damaged_part_are_registered_the_part_reported_with_its_photo(
        stack, city, phones, registry, home, tmp_path):
    member, building, house_id, household_id = home
    [(thing_id,)] = owner_rows(stack, "select thing_id from things where grid_code = %s and thing_id like %s",
                               member.grid_code, "t-hh-ledger-browser-%")
    phone = phones(member, city)
    phone.enrol(registry)
    page = phone.page
    phone.go("more")
    page.locator("a.menu-entry[href='#registration']").tap()
    for kind in (SubmissionKind.MOVED_OUT, SubmissionKind.HOUSE_USE_CHANGED, SubmissionKind.NEW_SHOP):
        open_form(page, kind)                                               # each form opens with its choices
        page.locator("button.reg-save").wait_for(timeout=WAIT_MS)
        page.locator("a.reg-back").tap()
    open_form(page, SubmissionKind.HOUSEHOLD_CHANGED)                       # the household's head, from its residents
    page.select_option("select[name=building]", building.building_id)
    page.select_option("select[name=house]", str(house_id))
    page.locator(f".reg-households button[data-value='{household_id}']").tap()
    [(head_id,)] = owner_rows(stack, "select head_id from households where household_id = %s", household_id)
    page.select_option("select[name=head]", str(head_id))
    page.locator("button.reg-save").tap()
    page.locator(".reg-item", has_text="户信息变更").get_by_text("待审核").wait_for(timeout=WAIT_MS)
    assert owner_rows(stack, "select payload ->> 'head_id', payload ->> 'household_id' from ledger_submissions "
                      "where member_id = %s and target_id = %s", member.member_id, str(household_id)) == \
        [(str(head_id), str(household_id))]
    page.locator(f"a.menu-entry[data-kind={SubmissionKind.THING_DAMAGED.value}]").tap()
    page.select_option("select[name=thing]", thing_id)
    page.locator(f".reg-state button[data-value={ThingState.DAMAGED.value}]").tap()
    page.fill("textarea[name=note]", "井盖裂开一角")
    page.locator("input.file-input").set_input_files([str(jpeg_file(tmp_path, "cover.jpg", (120, 120, 120)))])
    page.locator(".picker .thumbs img").wait_for(timeout=WAIT_MS)
    page.locator("button.reg-save").tap()
    page.locator(".reg-item", has_text="部件损坏").get_by_text("待审核").wait_for(timeout=WAIT_MS)   # sent, listed
    assert (phone.stored("outbox"), phone.stored("refused")) == (0, 0)       # photo, incident, registration: sent

    def submitted():
        return owner_rows(stack, "select kind, photo_refs from ledger_submissions where member_id = %s "
                          "and target_id = %s", member.member_id, thing_id)
    [(kind, refs)] = wait_for(submitted, 30, "the part's registration in the review queue")
    assert kind == SubmissionKind.THING_DAMAGED.value and len(refs) == 1
    reports = owner_rows(stack, "select category, photo_refs from incident_reports where terminal_id = %s "
                         "and description = %s", member.terminal_id, "井盖裂开一角")
    assert reports == [(ThingKind.MANHOLE_COVER.value, refs)]          # the part's case category, the same photo
    assert page.errors == []
