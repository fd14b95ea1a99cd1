"""The members' handheld (网格通) photographed on a running demo, for README.md (`make screenshots`
calls `shoot`): a phone enrolled for a demo member from the Members' phones page as the demo's
admin would, opened at `<device-facing URL>/handheld/#enrol=<code>` in a phone-sized Chromium
(360×640, touch, zh-CN, its GPS inside the member's grid), its PIN chosen, and every screen taken
as the member sees it: docs/screenshots/handheld-<screen>.png.

Who is photographed is chosen from the demo's database (as its owner, read only): for My tasks a
member whose terminal has offers or open cases now (of the street the announcement went to, when
one has), for Verify a member of a grid with a case waiting for verification that they did not
handle (a grid supervisor first). What the phone sends is real: its patrol fixes, a report with a
photo and a diary entry made while the phone is offline reach the demo when it is back online."""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from PIL import Image, ImageDraw

from core.catalogue import CaseState
from core.roles import Role
from stack.stack import PG_DATABASE, PG_SUPERUSER

PHONE = {"width": 360, "height": 640}
TALL_PHONE = {"width": 412, "height": 915}
PIN = "135790"
ANNOUNCED_STREET = "350102002"       # where screenshots.py's announcement went
WAIT_MS = 30_000

# a member whose terminal has offers or open cases (offers count most: they show the countdown),
# of the announced street first; the states, org containment and role by their owners
_TASKED = """
with offers as (select o.terminal_id, count(*) as n from case_offers o join cases c using (case_id)
                where o.outcome is null and o.expires_at > now() and c.state = %(dispatched)s group by 1),
     open as (select handler as terminal_id, count(*) as n from cases
              where state = any(%(open)s) group by 1)
select m.member_id, m.terminal_id, m.grid_code from members m
  left join offers using (terminal_id) left join open using (terminal_id)
 where coalesce(offers.n, 0) + coalesce(open.n, 0) > 0
 order by org_contains(%(street)s, m.grid_code) desc, coalesce(offers.n, 0) * 10 + coalesce(open.n, 0) desc,
          m.member_id
 limit 1"""
_ANY_OF_STREET = ("select member_id, terminal_id, grid_code from members where org_contains(%(street)s, grid_code) "
                  "order by 1 limit 1")
# a member of a grid with a case waiting for verification that they did not handle
_VERIFIER = """
select m.member_id, m.terminal_id, m.grid_code from members m join cases c
    on c.grid_code = m.grid_code and c.state = %(handled)s and c.handler is distinct from m.terminal_id
 group by 1, 2, 3, m.role
 order by (m.role = %(supervisor)s) desc, count(*) desc, m.member_id
 limit 1"""
_WORDS = {"dispatched": CaseState.DISPATCHED.value, "open": [CaseState.ACCEPTED.value, CaseState.HANDLING.value],
          "handled": CaseState.HANDLED.value, "supervisor": Role.GRID_SUPERVISOR.value, "street": ANNOUNCED_STREET}


@dataclass(frozen=True)
class Member:
    member_id: str
    terminal_id: str
    grid_code: str
    lon: float          # where the phone's GPS says it is: beside a building of the member's grid
    lat: float


def owner_dsn(data_dir: Path) -> str:
    """The running demo's database as its owner (the ports `stack` wrote, the password it made)."""
    written = dict(line.split("=", 1) for line in (data_dir / "stack.env").read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    password = json.loads((data_dir / "secrets.json").read_text())["pg_password"]
    return (f"host={written['GCC_PG_HOST']} port={written['GCC_PG_PORT']} dbname={PG_DATABASE} "
            f"user={PG_SUPERUSER} password={password}")


def choose(dsn: str, query: str) -> Member | None:
    """The member the query names, placed 15 m from their grid's first building (None: nobody)."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(query, _WORDS)
        row = cur.fetchone()
        if row is None:
            return None
        cur.execute("select lon, lat from buildings where grid_code = %s order by building_id limit 1", (row[2],))
        lon, lat = cur.fetchone()
    conn.close()
    return Member(*row, lon=lon + 0.0001, lat=lat + 0.0001)


def street_photo() -> bytes:
    """A JPEG to report: bags of rubbish left by a wall (drawn here, so no photo of anyone's street)."""
    image = Image.new("RGB", (1200, 900), (168, 196, 224))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 380, 1200, 900), fill=(120, 120, 116))                # the pavement
    draw.rectangle((0, 140, 1200, 420), fill=(196, 170, 140))                # the wall
    for x in range(0, 1200, 80):
        draw.line((x, 140, x, 420), fill=(170, 146, 118), width=3)
    for x, y, w, colour in ((260, 430, 260, (30, 30, 32)), (470, 470, 300, (38, 92, 48)), (720, 440, 220, (30, 30, 32)),
                            (380, 560, 340, (52, 110, 60)), (640, 590, 280, (24, 24, 26))):
        draw.ellipse((x, y, x + w, y + int(w * 0.8)), fill=colour)
        draw.line((x + w // 2 - 20, y + 8, x + w // 2 + 20, y - 20), fill=(200, 200, 200), width=6)
    draw.rectangle((900, 300, 1080, 640), fill=(40, 110, 60))                # an overflowing bin
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def enrol_from_devices_page(page, dashboard_url: str, member: Member, label: str, shot: Path | None) -> str:
    """The enrolment link the Members' phones page shows the admin for `member`'s new 网格通 phone
    (the page is signed in as the admin); `shot`: the page photographed with the link shown."""
    page.goto(dashboard_url + "/devices")
    page.click("#devices-member")
    page.keyboard.type(member.member_id)
    page.locator("[role=option]", has_text=member.member_id).first.click()
    page.click("#devices-app")
    page.locator("[role=option]", has_text="网格通").first.click()
    page.fill("#devices-label", label)
    page.click("#devices-add")
    link = page.locator("#devices-enrol-link")
    link.wait_for(timeout=WAIT_MS)
    if shot is not None:
        page.wait_for_timeout(500)
        page.screenshot(path=str(shot))
        print(shot)
    return link.inner_text().strip()


class Phone:
    """One member's phone in its own browser context (its IndexedDB, service worker, GPS, network)."""

    def __init__(self, browser, member: Member, out: Path) -> None:
        self.context = browser.new_context(
            viewport=PHONE, is_mobile=True, has_touch=True, locale="zh-CN", timezone_id="Asia/Shanghai",
            geolocation={"latitude": member.lat, "longitude": member.lon, "accuracy": 8}, permissions=["geolocation"])
        self.page = self.context.new_page()
        self.out = out

    def shot(self, screen: str, settle_ms: int = 600) -> None:
        """docs/screenshots/handheld-<screen>.png of what the phone shows now (a toast gone first)."""
        self.page.wait_for_timeout(settle_ms)
        self.page.locator("#toast.show").wait_for(state="detached", timeout=WAIT_MS)
        path = self.out / f"handheld-{screen}.png"
        self.page.screenshot(path=str(path))
        print(path)

    def go(self, route: str, ready: str) -> None:
        """The app's screen `route` (its tab or menu entry), once `ready` (a selector) is drawn."""
        self.page.evaluate("(route) => { location.hash = route; }", route)
        self.page.locator(f"main {ready}").first.wait_for(timeout=WAIT_MS)
        self.page.evaluate("window.scrollTo(0, 0)")

    def enrol(self, link: str, shot: bool) -> None:
        """The enrolment link opened, the PIN chosen twice, then signed in (Today drawn)."""
        self.page.goto(link)
        self.page.locator("input[name=pin]").wait_for(timeout=WAIT_MS)
        self.page.fill("input[name=pin]", PIN)
        self.page.fill("input[name=pin2]", PIN)
        self.page.fill("input[name=label]", "工作手机 work phone")
        if shot:
            self.shot("enrol")
        self.page.click("form button[type=submit]")
        self.page.locator("main .patrol .btn").wait_for(timeout=WAIT_MS)

    def sign_out_and_in(self) -> None:
        """Signed out from More, then the sign-in screen of the next shift photographed and used."""
        self.go("more", ".menu")
        self.page.get_by_role("button", name=re.compile("退出登录")).click()
        self.page.locator("input[name=pin]").wait_for(timeout=WAIT_MS)
        self.page.fill("input[name=pin]", PIN)
        self.shot("signin")
        self.page.click("form button[type=submit]")
        self.page.locator("main .patrol .btn").wait_for(timeout=WAIT_MS)

    def close(self) -> None:
        self.context.close()


def shoot(browser, admin_page, dashboard_url: str, data_dir: Path, out: Path) -> None:
    """Every screen of the handheld, from the running demo (the admin page signed in already)."""
    dsn = owner_dsn(data_dir)
    verifier = choose(dsn, _VERIFIER)
    if verifier is None:
        print("handheld-verify.png: no case waits for verification in the demo now; taken with none")
    else:
        link = enrol_from_devices_page(admin_page, dashboard_url, verifier, "核查用手机 verification phone", None)
        phone = Phone(browser, verifier, out)
        try:
            phone.enrol(link, shot=False)
            phone.go("verify", ".case-card, .empty")
            phone.shot("verify")
        finally:
            phone.close()
    member = choose(dsn, _TASKED)
    if member is None:
        print("handheld-tasks.png: no member has an offer or an open case in the demo now; taken with none")
        member = choose(dsn, _ANY_OF_STREET)
    link = enrol_from_devices_page(admin_page, dashboard_url, member, "工作手机 work phone",
                                   out / "devices-handheld.png")
    phone = Phone(browser, member, out)
    try:
        phone.enrol(link, shot=True)
        _member_day(phone)
    finally:
        phone.close()


def _member_day(phone: Phone) -> None:
    """One member's screens, in the order of a shift; the last ones with the phone offline (the
    report and a diary entry wait in the outbox, and say so), then online again until they left."""
    page = phone.page
    phone.sign_out_and_in()
    page.get_by_role("button", name=re.compile("开始巡查")).click()
    page.locator("main .patrol .notice.ok").wait_for(timeout=WAIT_MS)
    page.locator("main .map-box svg").first.wait_for(timeout=WAIT_MS)
    page.locator("main .figures .figure, main .figures .muted").first.wait_for(timeout=WAIT_MS)
    phone.shot("today", settle_ms=1500)
    page.set_viewport_size(TALL_PHONE)
    phone.shot("today-412x915")
    page.set_viewport_size(PHONE)
    phone.go("tasks", ".group-title")
    phone.shot("tasks")
    phone.go("sos", ".sos-button")
    phone.shot("sos")
    phone.go("announcements", ".announcement, .empty")
    phone.shot("announcements")
    phone.go("registration", ".card")
    phone.shot("registration")

    phone.go("report", ".category")
    page.locator("main .category[data-key=exposed_garbage], main .category").first.click()
    page.locator("main .picker input[type=file]").set_input_files(
        files=[{"name": "street.jpg", "mimeType": "image/jpeg", "buffer": street_photo()}])
    page.locator("main .thumb img").wait_for(timeout=WAIT_MS)
    page.fill("main textarea[name=description]",
              "东门垃圾桶满溢，袋装垃圾堆在墙边。Bin by the east gate overflowing, bags along the wall.")
    page.locator("main .place .building").wait_for(timeout=WAIT_MS)
    page.evaluate("window.scrollTo(0, 0)")
    phone.shot("report")
    page.evaluate("document.querySelector('main .picker').closest('section').scrollIntoView({block: 'start'})")
    phone.shot("report-photo")

    phone.context.set_offline(True)
    page.get_by_role("button", name=re.compile("提交上报")).click()
    page.locator("main .patrol").wait_for(timeout=WAIT_MS)
    phone.go("diary", ".choice")
    page.locator("main .choice").first.click()
    page.fill("main textarea", "3号楼独居老人王奶奶说楼道灯坏了一周，晚上下楼不便。"
                               "Mrs Wang, living alone in building 3: the stair light has been out for a week.")
    page.locator("#outbox-bar:not([hidden])").wait_for(timeout=WAIT_MS)
    page.evaluate("window.scrollTo(0, 0)")
    phone.shot("diary")
    page.get_by_role("button", name=re.compile("保存")).click()
    page.locator("main .diary-entry").first.wait_for(timeout=WAIT_MS)
    phone.go("outbox", ".queue-item")
    phone.shot("outbox")
    phone.go("more", ".menu")
    phone.shot("more")

    phone.context.set_offline(False)       # what waited leaves, in order, once the server has it
    phone.go("outbox", ".btn")
    page.get_by_role("button", name=re.compile("立即重试")).click()
    page.locator("#outbox-bar").wait_for(state="hidden", timeout=120_000)
