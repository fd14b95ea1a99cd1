"""Announcements against the real stack: one sent to a community reaches exactly the terminals of
that community's grids (the broker refuses anyone else's subscription to its topic), a terminal
briefly offline gets it on reconnecting, the receipts the terminals send are counted (a
non-recipient's is not), a dispatcher of another street may not send one here (refused,
audited), and the page sends one and follows its read count live."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from cases.notifier import Notifier
from core.orgcodes import ancestors
from core.roles import UserRole
from dashboard.announcements import Announce, sent_in, unread_by_announcement
from dashboard.authz import Identity
from dashboard.commands import Commands
from dashboard.queries import Queries
from telemetry.notices import Announcement
from telemetry.topics import READ, org_topic, terminal_topic

from ..support import wait_for
from .ingest_helpers import owner_rows
from .mqtt_helpers import MqttProbe
from .screens import SCREENSHOTS, ensure_logins, sign_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def notifier(stack):
    account = stack.account("cases")
    sender = Notifier(stack.app_settings("cases").pg_dsn, "127.0.0.1", stack.mosquitto.port, account.username,
                      account.password)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    yield sender
    sender.stop_event.set()
    thread.join(15)


@pytest.fixture(scope="module")
def places(city):
    """A street with two communities: the one announced to, and its neighbour."""
    street = next(s for s in city.streets if sum(c.code.startswith(s.code) for c in city.communities) >= 2)
    here, beside = [c for c in city.communities if c.code.startswith(street.code)][:2]
    return street, here, beside


def _terminal(stack, member, **kw) -> MqttProbe:
    """A member's terminal as the handheld connects: its own account, subscribed to the
    announcements of its grid and of every org unit above it."""
    account = stack.account(member.terminal_id)
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password, **kw)
    for code in ancestors(member.grid_code):
        assert probe.subscribe(org_topic(code)) == "Granted QoS 1"
    return probe


def _receipt(probe: MqttProbe, terminal_id: str, announcement_id: int, at: datetime | None = None) -> None:
    body = orjson.dumps({"ts": (at or datetime.now(timezone.utc)).isoformat(), "announcement_id": announcement_id})
    assert probe.publish(terminal_topic(terminal_id, READ), body) == "Success"


def test_an_announcement_reaches_exactly_the_terminals_of_its_scope_and_counts_their_receipts(
        stack, city, places, notifier, dashboard):
    street, here, beside = places
    inside = [m for m in city.members if m.grid_code.startswith(here.code)]
    outside = [m for m in city.members if m.grid_code.startswith(beside.code)][:6]
    away, present = inside[0], inside[1:]
    gone = _terminal(stack, away, session_expiry=3600)     # subscribed, then offline: its session waits
    gone.close()
    probes = {m.terminal_id: _terminal(stack, m) for m in present + outside}
    try:
        intruder = probes[outside[0].terminal_id]
        assert intruder.subscribe(org_topic(here.code)) == "Not authorized"   # not its community
        settings = stack.app_settings("dashboard")
        ctx = Commands(city, None, settings.pg_dsn, producer="test-announcements")
        far = next(s for s in city.streets if s.code != street.code)
        refused = ctx.execute(Identity("d-far", frozenset({UserRole.DISPATCHER}), far.code),
                              Announce(here.code, "Water cut", "No water 14:00-16:00", 1))
        assert not refused.ok and "outside" in refused.reason
        assert owner_rows(stack, "select outcome from audit_log where actor = 'd-far' and action = "
                                 "'announcement.send'") == [("refused",)]
        result = ctx.execute(Identity("d-street", frozenset({UserRole.DISPATCHER}), street.code),
                             Announce(here.code, "Water cut 停水通知", "No water 14:00-16:00 in the community", 1))
        assert result.ok, result.reason
        [(announcement_id, recipients)] = owner_rows(
            stack, "select id, recipients from announcements where sent_by = 'd-street' order by id desc limit 1")
        assert recipients == len(inside)
        got = {t: [Announcement.parse(m.payload) for m in p.received(3 if t == present[0].terminal_id else 0.2)]
               for t, p in probes.items()}
        assert {t for t, a in got.items() if a} == {m.terminal_id for m in present}       # exactly its scope
        assert all(len(a) == 1 and a[0].announcement_id == announcement_id and a[0].org_code == here.code
                   for t, a in got.items() if a)
        back = MqttProbe(stack.mosquitto.port, away.terminal_id, stack.account(away.terminal_id).password,
                         clean_start=False, session_expiry=3600)
        try:
            [late] = [Announcement.parse(m.payload) for m in back.received(3)]
        finally:
            back.close()
        assert late.announcement_id == announcement_id                  # waited for it at the broker
        readers = present[:3]
        for m in readers:
            _receipt(probes[m.terminal_id], m.terminal_id, announcement_id)
        _receipt(intruder, outside[0].terminal_id, announcement_id)     # not a recipient: stored, not counted
        _receipt(probes[readers[0].terminal_id], readers[0].terminal_id, announcement_id,  # read again: counted once
                 at=datetime.now(timezone.utc) + timedelta(milliseconds=10))                # (a receipt of its own)
        wait_for(lambda: owner_rows(stack, "select count(*), count(distinct terminal_id) from announcement_reads "
                                           "where announcement_id = %s", announcement_id) == [(5, 4)], 10,
                 "the receipts stored")
        rows = Queries(city, None, settings.pg_dsn).rows          # the dashboard's role, as its page reads them
        [listed] = [a for a in sent_in(rows, street.code) if a.announcement_id == announcement_id]
        assert (listed.read, listed.recipients) == (3, len(inside)) and listed.published_at is not None
        unread = unread_by_announcement(rows, [announcement_id], per=100)[announcement_id]
        assert set(unread) == {m.terminal_id for m in inside} - {m.terminal_id for m in readers}
        assert all(a.announcement_id != announcement_id for a in sent_in(rows, beside.code))
    finally:
        for probe in probes.values():
            probe.close()


def test_the_page_sends_an_announcement_and_follows_its_read_count_live(stack, city, places, notifier,
                                                                        dashboard, page):
    street, here, _ = places
    grid = next(g for g in city.grids if g.code.startswith(here.code))
    members = [m for m in city.members if m.grid_code == grid.code]
    probes = {m.terminal_id: _terminal(stack, m) for m in members}
    try:
        ensure_logins(stack.settings().pg_dsn)
        sign_in(page, dashboard.url, "t-dispatcher")
        page.goto(f"{dashboard.url}/announcements?scope={street.code}")
        page.wait_for_selector("#ann-conn.live")
        page.click("#ann-org")
        page.locator(".dash-dropdown-search").fill(grid.code)
        page.locator(".dash-dropdown-options").get_by_role("option").filter(has_text=f"· {grid.code}").click()
        page.fill("#ann-title", "Typhoon warning 台风预警")
        page.fill("#ann-body", "Check the drains of every building before 18:00.")
        page.click("#ann-send")
        wait_for(lambda: "Sent" in page.inner_text("#ann-result"), 10, "the announcement sent",
                 explain=lambda: page.inner_text("#ann-result"))
        [(announcement_id,)] = owner_rows(stack, "select id from announcements where title = %s and sent_by = %s",
                                          "Typhoon warning 台风预警", "t-dispatcher")
        item = page.locator(f"#ann-{announcement_id}")
        item.wait_for()
        assert f"read 0 / {len(members)}" in item.inner_text()
        for m in members:
            [message] = probes[m.terminal_id].received(5)
            assert Announcement.parse(message.payload).announcement_id == announcement_id
        for m in members[:2]:
            _receipt(probes[m.terminal_id], m.terminal_id, announcement_id)
        wait_for(lambda: f"read 2 / {len(members)}" in item.inner_text(), 10, "the read count follows live",
                 explain=lambda: item.inner_text())
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "announcements.png"))
        page.set_viewport_size({"width": 1366, "height": 768})
        page.screenshot(path=str(SCREENSHOTS / "announcements-laptop.png"))
        assert page.errors == []
    finally:
        for probe in probes.values():
            probe.close()
