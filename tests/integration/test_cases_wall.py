"""A case on the wall (Chromium): a gas alarm over MQTT becomes a case that appears in its street's
escalation queue with its countdown, turns overdue and shows the level it climbed to; the engine
tells the screens through the live bus. The limits run on a scaled clock (1/60: the 10 minutes
to register are 10 s)."""
from __future__ import annotations

import re
import threading
import uuid
from contextlib import contextmanager

import orjson
import pytest

from cases import store
from cases.engine import Engine
from cases.intake import Intake
from cases.tell import Teller

from .screens import ensure_signed_in, iso, now, publish_as
from .test_cases_engine import seeded

pytestmark = pytest.mark.slow
SCALE = 1 / 60


@contextmanager
def telling_engine(settings, city, time_scale: float = 1.0):
    """The cases engine as deployed, in a thread: it applies the terminals' actions, fires the
    deadlines (`time_scale`: limits as clock time, scaled) and tells the live bus."""
    running = Engine(settings.pg_dsn, Intake(city), lambda cur: store.load_rules(cur, time_scale=time_scale),
                     on_change=Teller(settings.redis_client(), city, producer=f"cases-{uuid.uuid4().hex[:4]}"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.stop_event.set()
        thread.join(10)


@pytest.fixture(scope="module")
def engine(stack, city):
    with telling_engine(seeded(stack), city, SCALE) as running:
        yield running


def test_a_gas_alarm_is_a_case_in_its_streets_queue_with_a_countdown_that_climbs(stack, city, dashboard, engine,
                                                                                   page):
    sensor = [s for s in city.sensors if s.kind.value == "gas_detector"][11]
    street = sensor.grid_code[:9]
    ensure_signed_in(page, dashboard.url)
    page.goto(f"{dashboard.url}/wall?scope={street}")
    page.wait_for_function("() => { const st = window.gcc && window.gcc.live && window.gcc.live.state('wall');"
                           " return st && st.scope !== null; }", timeout=20000)
    publish_as(stack, sensor.gateway_id, f"gcc/v1/gateway/{sensor.gateway_id}/alarm", orjson.dumps({
        "ts": iso(now()), "alarm_id": f"GAS-{uuid.uuid4().hex[:8]}", "sensor_id": sensor.sensor_id,
        "alarm_type": "gas_over_threshold", "severity": 4, "state": "raised", "value": 33.0}))
    row = page.locator(".case-row", has_text=city.building_by_id[sensor.building_id].name).first
    row.wait_for(timeout=15000)
    first = row.locator(".countdown").inner_text()
    assert re.fullmatch(r"0:\d\d", first), first                      # 10 s to register, counting down
    assert "to register" in row.inner_text() and "Gas over threshold" in row.inner_text()
    row.locator(".countdown.overdue").wait_for(timeout=20000)        # past the deadline: red, counting up
    assert "超期" in row.locator(".countdown").inner_text()
    row.locator(".row-level", has_text="community").wait_for(timeout=10000)   # climbed to the community
    overdue = int(page.inner_text("#wall-count-overdue .wall-tile-value"))
    assert overdue >= 1
    assert page.errors == []
