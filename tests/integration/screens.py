"""What the screen tests share: the dashboard as its own process, headless Chromium (Debian's,
driven by Playwright: no browser download), and publishing as a real device."""
from __future__ import annotations

import http.cookiejar
import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from config.settings import REPO_ROOT
from stack import free_port
from telemetry.topics import terminal_topic

from ..support import wait_for
from .ingest_helpers import fix_payload
from .mqtt_helpers import publish_once

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(os.environ.get("GCC_SCREENSHOT_DIR", "/tmp/gridcc-screenshots"))


TEST_PASSWORD = secrets.token_urlsafe(12)     # every test login's, this run
# (username, role, scope): the logins the screen tests sign in with ("" is the whole city)
TEST_LOGINS = {"t-admin": ("admin", ""), "t-dispatcher": ("dispatcher", ""), "t-leader": ("leader", ""),
               "t-viewer": ("wall_viewer", "")}


def ensure_logins(owner_dsn: str, logins: dict[str, tuple[str, str]] = TEST_LOGINS) -> None:
    """The test logins in the database (created once per database, each with TEST_PASSWORD)."""
    from dashboard.accounts import Accounts

    accounts = Accounts(owner_dsn, pool_size=1)
    try:
        existing = {u["username"] for u in accounts.users()}
        for username, (role, scope) in logins.items():
            if username not in existing:
                accounts.add_user(username, username, role, scope, TEST_PASSWORD, created_by="tests")
            else:
                accounts.set_password(username, TEST_PASSWORD, datetime.now(timezone.utc))
    finally:
        accounts.close()


def sign_in(page, base_url: str, username: str = "t-admin", password: str = TEST_PASSWORD) -> None:
    """Sign the browser in through the login form, as a person would."""
    page.goto(f"{base_url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url, timeout=15000)


def post_callback(base_url: str, cookie: str, body: dict) -> str:
    """A Dash callback request as a browser would send it (the tests forge what a page never offers)."""
    import json

    request = urllib.request.Request(f"{base_url}/_dash-update-component", data=json.dumps(body).encode(),
                                     headers={"Cookie": cookie, "Content-Type": "application/json",
                                              "Origin": base_url}, method="POST")
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.read().decode()


def session_cookie(base_url: str, username: str = "t-admin", password: str = TEST_PASSWORD) -> str:
    """A signed-in session's cookie ("gcc_session=…"), through the login form over plain HTTP."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(f"{base_url}/login", timeout=10).read().decode()
    token = re.search(r"name='csrf_token' value='([^']+)'", form).group(1)
    body = urllib.parse.urlencode({"csrf_token": token, "username": username, "password": password,
                                   "next": "/healthz"}).encode()
    opener.open(urllib.request.Request(f"{base_url}/login", data=body, headers={"Origin": base_url}), timeout=10)
    cookie = next(c for c in jar if c.name == "gcc_session")
    return f"{cookie.name}={cookie.value}"


class Dashboard:
    def __init__(self, stack, log_path: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **stack.app_env("dashboard"), "GCC_DASHBOARD_PORT": str(self.port)}
        self.log_path = log_path
        self.proc = None
        self.worker = None          # the ingest worker feeding it (ingest_helpers.ThreadWorker), if one does
        ensure_logins(stack.settings().pg_dsn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cookie(self) -> str:
        """An admin's session cookie on this dashboard (signed in once, kept)."""
        if getattr(self, "_cookie", None) is None:
            self._cookie = session_cookie(self.url)
        return self._cookie

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "dashboard"], cwd=REPO_ROOT, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._up, 60, "the dashboard to answer")

    def _up(self) -> bool:
        try:
            return urllib.request.urlopen(self.url + "/healthz", timeout=2).status == 200
        except OSError:
            return False

    def log_mark(self) -> int:
        """Where the dashboard's log ends now: what it logs next comes after."""
        return self.log_path.stat().st_size

    def wait_logged(self, text: str, mark: int, what: str, timeout: float = 10.0) -> None:
        """Until the dashboard logs `text` after `mark`: how the process tells what it did inside (its
        registry watch read the city again), read from its log, as nothing else signals it."""
        def logged() -> bool:
            with open(self.log_path, "rb") as log:
                log.seek(mark)
                return text in log.read().decode(errors="replace")
        wait_for(logged, timeout, what)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def publish_as(stack, username: str, topic: str, payload: bytes) -> None:
    """Publish as a device, with its own broker account, and insist on the broker's PUBACK."""
    assert publish_once(stack.mosquitto.port, stack.account(username), topic, payload) == "Success"


def member_fix(stack, member, lon: float, lat: float, t: datetime | None = None) -> None:
    publish_as(stack, member.terminal_id, terminal_topic(member.terminal_id, "fix"),
               fix_payload(t or now(), lon, lat, battery_pct=71))


def wait_wall_connection(page, live: bool = True, timeout_ms: int = 20000) -> None:
    """Until the wall's connection badge says live (or, `live=False`, no longer does)."""
    test = "" if live else "!"
    page.wait_for_function(f"() => {{ const c = document.querySelector('#wall-conn');"
                           f" return c && {test}c.innerText.includes('live'); }}", timeout=timeout_ms)


def ensure_signed_in(page, base_url: str, username: str = "t-admin") -> None:
    """Sign in unless this browser context holds a session already."""
    if not any(c["name"] == "gcc_session" for c in page.context.cookies()):
        sign_in(page, base_url, username)


def wall_key(stack, terminal_id: str) -> str:
    """The key the wall knows a member by (a keyed hash: the wall never learns terminal ids)."""
    from dashboard.pages import wall

    wall.use_key_secret(stack.app_env("dashboard")["GCC_DASHBOARD_SECRET_KEY"])
    return wall.member_key(terminal_id)
