"""The dispatcher's day, end to end, in Chromium against the real stack and the real processes: the
dashboard, an ingest worker, the cases engine (`python -m casework`, which also sends the notices)
and a member's terminal played by the simulator's own code (simulator.devices.TerminalSim over
its own MQTT connection).

A grid supervisor reports a blocked fire lane → it appears in the dispatcher's queue → registered,
Enter offers it to candidate 1, the nearest available police officer → the simulated terminal
accepts → the console shows the officer getting nearer → on scene → done, and the case waits for
verification. Meanwhile a second case: its first candidate's terminal never answers, and after the
offer's timeout the cases engine offers it to the console's second candidate, on screen.

Every limit runs 1/100 of its length (`GCC_CASES_TIME_SCALE`) and an offer expires after 8 s, in
both the dashboard and the engine, so the day takes a minute or two."""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import orjson
import pytest

from config.settings import REPO_ROOT
from core.roles import Role
from simulator.behaviour import metres_to_degrees
from simulator.devices import SimConfig, TerminalSim
from stack import free_port
from stack.apps import _answers as answers
from telemetry.topics import INCIDENT, NOTICE, terminal_topic

from ..support import wait_for
from .ingest_helpers import fed_by_a_worker, owner_rows
from .mqtt_helpers import MqttProbe
from .screens import SCREENSHOTS, Dashboard, member_fix, publish_as, sign_in

pytestmark = pytest.mark.slow
FAST = {"GCC_CASES_TIME_SCALE": "0.01", "GCC_DISPATCH_OFFER_TIMEOUT_S": "8", "GCC_DISPATCH_OFFER_TIMEOUT_URGENT_S": "8"}
SPEEDUP = 5.0                  # the simulated terminal's clock: walking, and the minutes on site


@pytest.fixture(scope="module")
def board(stack, city, tmp_path_factory):
    """The dashboard with the fast clocks, fed by an ingest worker of its own."""
    dash = Dashboard(stack, tmp_path_factory.mktemp("e2e") / "dashboard.log")
    dash.env.update(FAST)
    with fed_by_a_worker(stack, dash, 97) as running:
        yield running


@pytest.fixture(scope="module")
def engine(stack, city, tmp_path_factory):
    """The cases engine as deployed (its intake, escalations, offers and notices), fast clocks."""
    port = free_port()
    env = {**os.environ, **stack.app_env("cases", stack.account("cases")), **FAST, "GCC_CASES_METRICS_PORT": str(port)}
    log = open(tmp_path_factory.mktemp("e2e-cases") / "cases.log", "ab")  # noqa: SIM115 - the process's log
    proc = subprocess.Popen([sys.executable, "-m", "casework"], cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 60, "the cases engine's health")
        yield proc
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


class Terminal:
    """A member's handheld, played by the simulator's TerminalSim over the member's own MQTT
    connection (its notices in, its fixes and case answers out), stepped in real time."""

    def __init__(self, stack, city, member, lon: float, lat: float) -> None:
        cfg = SimConfig(speedup=SPEEDUP, fix_interval_s=2.0, incidents_per_member_hour=0.0,
                        offline_per_terminal_hour=0.0, case_reject_fraction=0.0, case_silent_fraction=0.0,
                        case_extension_fraction=0.0, case_late_fraction=0.0)
        account = stack.account(member.terminal_id)
        self.probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
        assert self.probe.subscribe(terminal_topic(member.terminal_id, NOTICE)) == "Granted QoS 1"
        self.sim = TerminalSim(member, city.grid_by_code[member.grid_code], cfg, random.Random(5),
                               lambda topic, payload: self.probe.client.publish(topic, payload, qos=1) and True,
                               ["Gate 3"])
        self.sim.patrol.lon, self.sim.patrol.lat = lon, lat
        self.sim.patrol.speed_mps = 1.2
        self.sim.patrol.pause_s = 1e9          # stands here until a case sends them somewhere
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            now = datetime.now(timezone.utc)
            while not self.probe.messages.empty():
                message = self.probe.messages.get_nowait()
                self.sim.on_downlink(message.topic, message.payload, now)
            self.sim.step(now, 0.1 * SPEEDUP)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.probe.close()


def _report(stack, reporter, report_id: str, category: str, lon: float, lat: float) -> None:
    body = {"ts": datetime.now(timezone.utc).isoformat(), "report_id": report_id, "category": category,
            "severity": 3, "lat": lat, "lon": lon, "address": "Lane behind Building 2",
            "description": "Reported on patrol"}
    publish_as(stack, reporter.terminal_id, terminal_topic(reporter.terminal_id, INCIDENT), orjson.dumps(body))


def _case_of(stack, reporter, report_id: str) -> str | None:
    rows = owner_rows(stack, "select case_id from case_sources where kind = 'report' and key = %s",
                      f"{reporter.terminal_id}/{report_id}")
    return rows[0][0] if rows else None


def _metres_away(page) -> float | None:
    text = page.inner_text("#dispatch-handler-at") if page.locator("#dispatch-handler-at").count() else ""
    found = re.search(r"(\d+) m from the place", text)
    return float(found.group(1)) if found else None


def _choose(page, case_id: str):
    row = page.locator(f".dispatch-case[id*='{case_id}']")
    row.wait_for(timeout=15000)
    row.click()
    return row


def test_a_report_is_offered_accepted_walked_to_and_handled_and_an_ignored_offer_moves_on(
        stack, city, board, engine, page):
    grid = city.grids[140]
    members = {m.role: m for m in city.members if m.grid_code == grid.code}
    officer, administrator, coordinator = (members[Role.GRID_POLICE_OFFICER], members[Role.GRID_ADMINISTRATOR],
                                           members[Role.GRID_COORDINATOR])
    reporter = members[Role.GRID_SUPERVISOR]
    place = grid.boundary.representative_point()
    lon, lat = place.x, place.y

    def at(north_m: float, east_m: float = 0.0) -> tuple[float, float]:
        d_lon, d_lat = metres_to_degrees(lat, east_m, north_m)
        return lon + d_lon, lat + d_lat

    terminal = Terminal(stack, city, officer, *at(150))          # the nearest, and its terminal answers
    try:
        for m, north in ((administrator, 320), (coordinator, 420)):   # located, but nobody answers for them
            member_fix(stack, m, *at(north))
        wait_for(lambda: owner_rows(stack, "select count(*) from positions where terminal_id = %s",
                                    officer.terminal_id)[0][0] > 0, 15, "the simulated terminal's fixes stored")
        sign_in(page, board.url, "t-dispatcher")
        page.goto(f"{board.url}/dispatch")
        page.wait_for_selector("#dispatch-conn.live")

        # 1. a report comes in: it appears in the queue; registered, Enter offers it to candidate 1
        report_id = f"R-E2E-{int(time.time())}"
        _report(stack, reporter, report_id, "blocked_fire_lane", lon, lat)
        case_id = wait_for(lambda: _case_of(stack, reporter, report_id), 15, "the report to become a case")
        row = _choose(page, case_id)
        assert "to register" in row.inner_text()
        page.wait_for_selector(".dispatch-register")
        page.keyboard.press("Enter")                              # Enter on a reported case: Register
        page.wait_for_selector("#dispatch-cand-1 .dispatch-offer-button")
        first = page.inner_text("#dispatch-cand-1")
        assert officer.name in first and "same grid" in first, first
        page.keyboard.press("Enter")
        wait_for(lambda: "offered" in page.inner_text("#dispatch-result"), 10, "the offer confirmed in place")
        # 2. the simulated terminal accepts; the console follows it on its way
        wait_for(lambda: owner_rows(stack, "select state from cases where case_id = %s", case_id)[0][0]
                 in ("accepted", "handling", "handled"), 30, "the terminal's acceptance")
        wait_for(lambda: "accepted, on the way" in page.inner_text("#dispatch-candidates"), 15,
                 "the console says the officer is on the way", explain=lambda: page.inner_text("#dispatch-candidates"))
        task = page.locator(f".dispatch-task[id*='{case_id}']")
        assert "en route" in task.inner_text() and officer.name in task.inner_text()
        start = wait_for(lambda: _metres_away(page), 10, "the officer's distance on the console")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        wait_for(lambda: (_metres_away(page) or start) < start - 20, 20, "the officer's marker moving nearer",
                 explain=lambda: f"{start} m, now {_metres_away(page)} m")
        page.screenshot(path=str(SCREENSHOTS / "dispatch-en-route.png"))

        # 3. meanwhile a second case: its first candidate never answers; after 8 s the second gets it
        second_id = f"R-E2E2-{int(time.time())}"
        _report(stack, reporter, second_id, "illegal_parking", *at(-40, 30))
        second = wait_for(lambda: _case_of(stack, reporter, second_id), 15, "the second case")
        row2 = _choose(page, second)
        page.wait_for_selector(".dispatch-register")
        page.keyboard.press("Enter")                              # register
        page.wait_for_selector("#dispatch-cand-2 .dispatch-offer-button")
        names = [page.inner_text(f"#dispatch-cand-{n}").split("\n")[1].split(" · ")[0] for n in (1, 2)]
        assert officer.name not in names                          # busy with the first case: ranked last
        page.keyboard.press("Enter")
        wait_for(lambda: f"offered to {names[0]}" in row2.inner_text(), 10, "offered to candidate 1, on screen")
        wait_for(lambda: f"offered to {names[1]}" in row2.inner_text(), 25,
                 "after the timeout, offered to candidate 2, on screen", explain=lambda: row2.inner_text())
        offers = owner_rows(stack, "select offered_by, outcome from case_offers where case_id = %s order by id", second)
        assert offers[0] == ("t-dispatcher", "expired") and offers[1] == ("automatic dispatch", None)
        page.screenshot(path=str(SCREENSHOTS / "dispatch-second-candidate.png"))

        # 4. back to the first: on scene, done, and it waits for verification
        page.locator(f".dispatch-task[id*='{case_id}']").click()
        seen = []                                                 # how far from the place, as the console said

        def handled() -> bool:
            seen.append(_metres_away(page))
            return owner_rows(stack, "select state from cases where case_id = %s", case_id)[0][0] == "handled"
        wait_for(handled, 90, "the officer's feedback: the case handled", interval=0.5)
        wait_for(lambda: "done, awaiting verification" in page.inner_text("#dispatch-candidates"), 15,
                 "the console shows it done")
        row1 = page.locator(f".dispatch-task[id*='{case_id}']")
        wait_for(lambda: "to verify" in row1.inner_text(), 10, "the task row says it waits for verification",
                 explain=lambda: row1.inner_text())
        events = [c for (c,) in owner_rows(stack, "select command from case_events where case_id = %s order by id",
                                           case_id)]
        assert events[:5] == ["open", "register", "dispatch", "accept", "start"] and "feedback" in events
        assert min(m for m in seen if m is not None) < 15        # the officer came to the place
        page.screenshot(path=str(SCREENSHOTS / "dispatch-done.png"))
        page.set_viewport_size({"width": 1366, "height": 768})
        page.screenshot(path=str(SCREENSHOTS / "dispatch-done-laptop.png"))
        assert page.errors == []
    finally:
        terminal.close()
