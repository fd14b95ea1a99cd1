"""The simulator drives members through the handheld's API (simulator.handheld), not MQTT: the
stack's demo enrolment gives members a code, the simulated phones enrol with it (their credentials
kept for the next start), sign in, send their fixes through the real device-facing service into the
database, and take what waits in their outbox (acknowledging it)."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import orjson
import pytest

from simulator.devices import SimConfig
from simulator.handheld import enrol_demo_phones, load_phones, save_phones
from simulator.run import Simulator

from ..support import wait_for
from .ingest_helpers import HttpService, owner_rows

PHONES = 3


@pytest.fixture(scope="module")
def service(stack, city, tmp_path_factory):
    with HttpService(stack, tmp_path_factory.mktemp("sim-phones") / "ingest-http.log") as running:
        yield running


def test_simulated_phones_enrol_report_and_take_their_outbox(stack, city, service, tmp_path):
    path = tmp_path / "phones.json"
    started = datetime.now(timezone.utc)
    assert enrol_demo_phones(stack.settings().pg_dsn, city, path, PHONES) == PHONES
    phones = load_phones(path)
    assert [p.enrol_code is not None and p.credentials is None for p in phones] == [True] * PHONES
    terminals = [p.terminal_id for p in phones]
    # no broker passwords: only the phones are simulated (the MQTT terminals have no account here)
    sim = Simulator(city, {}, "127.0.0.1", stack.mosquitto.port, SimConfig(speedup=20, fix_interval_s=5),
                    max_gateways=0, phones=phones, phone_url=f"http://127.0.0.1:{service.port}",
                    on_enrolled=lambda phone: save_phones(path, [phone]))
    assert sorted(sim.phones) == sorted(terminals) and len(sim.terminals) == PHONES
    stop = threading.Event()
    runner = threading.Thread(target=sim.run, kwargs={"stop": stop, "status_every": 0}, daemon=True)
    runner.start()
    try:
        def fixes() -> set[str]:
            return {t for (t,) in owner_rows(stack, "select distinct terminal_id from positions where "
                                                    "terminal_id = any(%s) and received_at >= %s", terminals, started)}
        wait_for(lambda: fixes() == set(terminals), 60, "a fix from every simulated phone", explain=fixes)
        devices = owner_rows(stack, "select d.device_id from member_devices d join members m using (member_id) "
                                    "where d.kind = 'handheld' and m.terminal_id = any(%s) and d.added_at >= %s",
                             terminals, started)
        assert sorted(d for (d,) in devices) == sorted(p.credentials.device_id for p in phones)   # a code, once
        device_id = next(p.credentials.device_id for p in phones if p.terminal_id == terminals[0])
        body = {"announcement_id": 990001, "org_code": city.members[0].grid_code[:6], "org_name": "t",
                "ts": started.isoformat(), "expires": None, "title": "t", "body": "t", "sender": "t"}
        owner_rows(stack, "insert into handheld_outbox (device_id, kind, key, body) values "
                          "(%s, 'announcement', '990001', %s) returning seq", device_id, orjson.dumps(body).decode())
        wait_for(lambda: owner_rows(stack, "select acked_at is not null from handheld_outbox where device_id = %s "
                                           "and key = '990001'", device_id) == [(True,)],
                 60, "the phone to take and acknowledge its outbox item")
        assert sum(p.counts["downlink:announcement"] for p in phones) >= 1
    finally:
        stop.set()
        runner.join(20)
    saved = orjson.loads(path.read_bytes())
    assert all(saved[t].get("device_secret") for t in terminals)   # credentials kept for the next start
