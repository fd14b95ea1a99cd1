"""Screenshots of the screens of a running demo, for README.md: `make screenshots` (after `make demo`
has run for a minute in another terminal, so the simulator has filled the screens); the members'
handheld (网格通) at phone size too (scripts/handheld_shots.py), and the ledger's screens
(scripts/ledger_shots.py). `--only handheld` (or `ledger`) takes only those."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from scripts import handheld_shots, ledger_shots

CHROMIUM = "/usr/bin/chromium"
FIRST_CASE = "first case"     # the page of the case the list shows first (the one nearest its deadline)
CONSOLE = "console"           # the dispatcher console with a case to dispatch chosen (its candidates shown)
ANNOUNCE = "announce"         # sends an announcement to a street (its read count grows while the others are taken)
REPLAY = "replay"             # a member's track today, loaded and played for a few seconds
DEVICES = "devices"           # adds a phone (OwnTracks) to the first member: its QR code and password shown once
MEMBERS = "members"           # adds a member with their terminal: its password and broker shown once
GATEWAYS = "gateways"         # a gateway found by its building and chosen: its sensors listed
BOUNDARIES = "/boundaries"    # the first community's grids on the map, to download or import
HANDHELD = "handheld"         # a member's phone (网格通) enrolled on the devices page, then its every screen
LEDGER = "ledger"             # the ledger's screens (scripts/ledger_shots.py), a registration put in the queue first
WALL, LAPTOP = (1920, 1080), (1366, 768)
ANNOUNCED = "/announcements?scope=350102002"
SHOTS = [("login.png", "/login", WALL), (None, ANNOUNCE, WALL), ("wall.png", "/wall?kiosk=1", WALL),
         ("wall-street.png", "/wall?scope=350102002", WALL), ("dispatch.png", CONSOLE, WALL),
         ("cases.png", "/cases", WALL), ("case.png", FIRST_CASE, WALL), ("case-laptop.png", FIRST_CASE, LAPTOP),
         ("rules.png", "/rules", WALL), ("audit.png", "/audit", WALL), ("admin-laptop.png", "/admin", LAPTOP),
         ("announcements.png", ANNOUNCED, WALL), ("kpis.png", "/kpis?scope=350102&period=month", WALL),
         ("kpis-laptop.png", "/kpis?scope=350102002&period=week", LAPTOP), ("replay.png", REPLAY, WALL),
         ("replay-laptop.png", REPLAY, LAPTOP), ("devices.png", DEVICES, WALL), ("devices-laptop.png", DEVICES, LAPTOP),
         ("members.png", MEMBERS, WALL), ("members-laptop.png", MEMBERS, LAPTOP), ("gateways.png", GATEWAYS, WALL),
         ("gateways-laptop.png", GATEWAYS, LAPTOP), ("boundaries.png", BOUNDARIES, WALL),
         ("boundaries-laptop.png", BOUNDARIES, LAPTOP), ("handheld", HANDHELD, LAPTOP), ("ledger", LEDGER, WALL)]


def _shoot(page, path: Path, settle: float) -> None:
    """The page's screenshot once it has settled for `settle` seconds."""
    time.sleep(settle)
    page.screenshot(path=str(path))
    print(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8050")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--data-dir", type=Path, default=Path(".data"), help="the demo's (its admin login)")
    parser.add_argument("--only", nargs="*", help="only these screenshots (file names)")
    args = parser.parse_args()
    password = json.loads((args.data_dir / "secrets.json").read_text())["demo_login_admin"]
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        page = context.new_page()
        for name, path, (width, height) in SHOTS:
            if args.only and name not in args.only and name != "login.png":
                continue
            if name != "login.png" and "/login" in page.url:      # signed in after the login page's shot
                page.fill("input[name=username]", "admin")
                page.fill("input[name=password]", password)
                page.click("button[type=submit]")
                page.wait_for_url(lambda url: "/login" not in url)
            if name != "login.png":            # each screen on a page of its own (the session is the context's)
                page.close()
                page = context.new_page()
            page.set_viewport_size({"width": width, "height": height})
            if path == FIRST_CASE:
                page.goto(args.url + "/cases")
                path = page.locator("#cases-table .case-link").first.get_attribute("href")
            if path == ANNOUNCE:
                page.goto(args.url + ANNOUNCED)
                page.fill("#ann-title", "台风预警 Typhoon warning")
                page.fill("#ann-body", "今晚台风过境，请于18:00前检查辖区排水和招牌。Typhoon expected tonight: check "
                                       "the drains and loose signs of every building in your grid before 18:00.")
                page.click("#ann-send")
                page.locator("#ann-result .admin-done").wait_for()
                continue
            if path == LEDGER:        # ledger*.png (scripts/ledger_shots.py)
                ledger_shots.shoot(context, args.url, args.data_dir, args.out)
                continue
            if path == HANDHELD:      # devices-handheld.png and handheld-<screen>.png (scripts/handheld_shots.py)
                handheld_shots.shoot(browser, page, args.url, args.data_dir, args.out)
                continue
            if path == REPLAY:
                page.goto(args.url + "/replay?scope=350102002")
                page.click("#replay-member")
                page.locator("[role=option]").first.click()
                page.click("#replay-load")
                page.wait_for_function("!document.querySelector('#replay-play').disabled", timeout=30000)
                page.click("#replay-speed")
                page.click("[role=option]:has-text('20×')")
                page.click("#replay-play")
                _shoot(page, args.out / name, settle=4)
                continue
            if path == DEVICES:
                page.goto(args.url + "/devices")
                page.click("#devices-member")
                page.locator("[role=option]").first.click()
                page.fill("#devices-label", "work phone 工作手机")
                page.click("#devices-add")
                page.locator("#devices-qr").wait_for()
                _shoot(page, args.out / name, settle=1)
                continue
            if path == MEMBERS:
                page.goto(args.url + "/members")
                member = f"M-{int(time.time()) % 100000:05d}"
                page.fill("#members-id", member)
                page.fill("#members-name", "王芳")
                page.click("#members-role")
                page.locator("[role=option]").first.click()
                page.click("#members-grid")
                page.locator("[role=option]").first.click()
                page.fill("#members-terminal", f"T-{member}")
                page.click("#members-add")
                page.locator("#members-secret").wait_for()
                _shoot(page, args.out / name, settle=1)
                continue
            if path == GATEWAYS:
                page.goto(args.url + "/gateways")
                page.fill("#gateways-search", "GW-")
                page.press("#gateways-search", "Enter")
                page.wait_for_timeout(500)           # the search redraws the list: a click before lands on
                page.wait_for_function("() => !document.title.startsWith('Updating')")   # a button it replaces
                page.locator("#gateways-list button", has_text="Sensors").first.click()
                page.locator("#gateways-sensor-list tbody tr").first.wait_for()
                _shoot(page, args.out / name, settle=1)
                continue
            if path == CONSOLE:
                page.goto(args.url + "/dispatch")
                page.locator(".dispatch-case").first.wait_for()
                waiting = page.locator(".dispatch-case", has_text="to dispatch")
                (waiting.first if waiting.count() else page.locator(".dispatch-case").first).click()
            else:
                page.goto(args.url + path)
            _shoot(page, args.out / name, settle=6)   # snapshot, a few frames, the heat map
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
