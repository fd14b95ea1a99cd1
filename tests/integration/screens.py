"""What the screen tests share: the dashboard as its own process, headless Chromium (Debian's,
driven by Playwright: no browser download), and publishing as a real device."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
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


class Dashboard:
    def __init__(self, stack, log_path: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **stack.app_env("dashboard"), "GCC_DASHBOARD_PORT": str(self.port)}
        self.log_path = log_path
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "dashboard"], cwd=REPO_ROOT, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._up, 60, "the dashboard to answer")

    def _up(self) -> bool:
        try:
            return urllib.request.urlopen(self.url + "/wall", timeout=2).status == 200
        except OSError:
            return False

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
