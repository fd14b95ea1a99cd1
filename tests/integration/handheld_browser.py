"""What the handheld's browser tests share (tests/integration/test_handheld_browser.py): the real
processes a phone's day goes through — the device-facing service (`python -m ingest.http`: the app,
its API and the ingest chain), the handheld bridge (the downlink into the phones' outbox), the cases
engine (`python -m casework`: intake, notices, the live bus) and the dashboard (conftest's) — and
headless Chromium as a phone: a 360×640 touch viewport, zh-CN, its geolocation granted and set
inside the member's grid. `Phone.enrol` walks the app's own enrolment and PIN screens with a
one-time code an admin made (registry.store.DeviceRegistry.enrol_handheld)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from config.settings import REPO_ROOT
from registry.broker import BrokerAdmin
from registry.store import Actor, DeviceRegistry
from stack import free_port
from stack.apps import _answers as answers

from ..support import wait_for
from .ingest_helpers import HttpService, owner_rows
from .test_handheld_outbox import running_bridge

SHOTS = Path(os.environ.get("GCC_HANDHELD_SHOTS", "/tmp/handheld-e2e"))
PHONE_VIEWPORT = {"width": 360, "height": 640}
PIN = "246801"
ADMIN = Actor("t-hh-browser")
WAIT_MS = 30_000


# --- the processes ------------------------------------------------------------------------------------
@pytest.fixture(scope="module", name="phone_service")
def phone_service_fixture(stack, city, tmp_path_factory):
    """The device-facing service as the stack runs it: the app at /handheld/, its API, the chain."""
    with HttpService(stack, tmp_path_factory.mktemp("hh-browser") / "ingest-http.log") as running:
        yield running


@pytest.fixture(scope="module", name="bridge")
def bridge_fixture(stack, city):
    """The handheld bridge (the command center's notices into the phones' outbox), subscribed."""
    with running_bridge(stack) as running:
        yield running


@pytest.fixture(scope="module", name="casework")
def casework_fixture(stack, city, tmp_path_factory):
    """The cases engine as deployed (`python -m casework`: its intake, notices to terminals, the live
    bus), real clocks."""
    port = free_port()
    env = {**os.environ, **stack.app_env("cases", stack.account("cases")), "GCC_CASES_METRICS_PORT": str(port)}
    log = open(tmp_path_factory.mktemp("hh-cases") / "cases.log", "ab")  # noqa: SIM115 - the process's log
    proc = subprocess.Popen([sys.executable, "-m", "casework"], cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 60, "the cases engine's health")
        yield proc
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


@pytest.fixture(scope="module", name="registry")
def registry_fixture(stack):
    """The registry as an admin's screen uses it (the dashboard's role)."""
    settings = stack.app_settings("dashboard")
    return DeviceRegistry(settings.pg_dsn, BrokerAdmin.from_settings(settings))


# --- the phone ----------------------------------------------------------------------------------------
@dataclass
class Phone:
    """A member's phone: a Chromium context of its own (its IndexedDB, service worker and network)."""
    member: object
    context: object
    page: object
    base_url: str
    stack: object
    device_id: str | None = None

    def enrol(self, registry: DeviceRegistry, pin: str = PIN) -> str:
        """An admin makes a one-time code; the member opens its link, chooses a PIN twice and is
        signed in on the Today screen. The phone's device id."""
        enrolment = registry.enrol_handheld(ADMIN, self.member.member_id, "test phone")
        self.page.goto(f"{self.base_url}/handheld/#enrol={enrolment.code}")
        self.page.fill("input[name=pin]", pin)
        self.page.fill("input[name=pin2]", pin)
        self.page.locator("form button[type=submit]").click()
        self.signed_in()
        self.device_id = enrolment.device_id
        assert owner_rows(self.stack, "select member_id from member_devices where device_id = %s and kind = "
                          "'handheld' and retired_at is null", self.device_id) == [(self.member.member_id,)]
        return self.device_id

    def signed_in(self) -> None:
        """Until the app shows its shell with the member's name (the sign-in is done, GET /me read)."""
        self.page.wait_for_function("() => !document.body.classList.contains('signed-out')", timeout=WAIT_MS)
        self.page.locator("#who .who-name", has_text=self.member.name).wait_for(timeout=WAIT_MS)

    def go(self, route: str) -> None:
        """A tab of the app (or the header's SOS), as the member taps it."""
        self.page.locator(f"#tabs a[data-route={route}], header a#{route}-link").tap()
        self.page.wait_for_function(f"() => location.hash === '#{route}'", timeout=WAIT_MS)

    def shot(self, name: str, focus=None) -> Path:
        """A screenshot of the phone's screen into SHOTS (`focus`: a locator scrolled to its middle first)."""
        if focus is not None:
            focus.evaluate("el => el.scrollIntoView({block: 'center'})")
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def stored(self, name: str) -> int:
        """How many items the app's IndexedDB store `name` holds now (outbox, refused: as the bar counts)."""
        return self.page.evaluate("async name => (await import('./js/db.js')).count(name)", name)


def phone_context(browser, base_url: str, lon: float, lat: float):
    """A phone's browser context: 360×640, touch, zh-CN, its position granted and set at (lon, lat)."""
    context = browser.new_context(viewport=PHONE_VIEWPORT, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  locale="zh-CN", timezone_id="Asia/Shanghai", base_url=base_url,
                                  geolocation={"latitude": lat, "longitude": lon, "accuracy": 8},
                                  permissions=["geolocation"])
    return context


@pytest.fixture(name="phones")
def phones_fixture(stack, browser, phone_service):
    """open(member) → a Phone in a context of its own, at a point inside the member's grid (closed after)."""
    opened = []

    def open_phone(member, city) -> Phone:
        inside = city.grid_by_code[member.grid_code].boundary.representative_point()
        base = f"http://127.0.0.1:{phone_service.port}"
        context = phone_context(browser, base, inside.x, inside.y)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        phone = Phone(member, context, page, base, stack)
        opened.append(phone)
        return phone

    yield open_phone
    for phone in opened:
        phone.context.close()


def jpeg_file(directory: Path, name: str, colour: tuple[int, int, int], size=(1200, 900)) -> Path:
    """A camera's JPEG (made here, with a pattern so the app's shrinking has something to keep)."""
    image = Image.new("RGB", size, colour)
    for x in range(0, size[0], 60):
        for y in range(0, size[1], 60):
            if (x + y) // 60 % 2:
                image.paste((255 - colour[0], 255 - colour[1], 255 - colour[2]), (x, y, x + 30, y + 30))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    path = directory / name
    path.write_bytes(out.getvalue())
    return path
