"""An alarm checked on site (紧急核实), the kind added as the check of "a message kind in one place":
declared in telemetry/kinds/alarm_check.py alone (with its migration), it is allowed by the broker,
decoded, stored, granted and carried on the live bus with no other code naming it."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg2.errors
import pytest

from simulator import payloads
from telemetry import live
from telemetry.kinds.alarm_check import AlarmCheckChange

from .ingest_helpers import ThreadWorker, owner_rows, rows
from .mqtt_helpers import MqttProbe


@pytest.fixture(scope="module")
def worker(stack, settings, city):
    with ThreadWorker(stack, index=93, share_group=f"t{uuid.uuid4().hex[:8]}") as w:
        yield w


def _changes_until(bus: live.BusReader, found, seconds: float = 10.0) -> list:
    """Read the bus (each read waits for the next entry) until `found` picks something out of it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        picked = [c for envelope in bus.read() for c in envelope.changes if found(c)]
        if picked:
            return picked
    raise AssertionError(f"nothing on the live bus within {seconds:.0f} s")


def test_a_member_s_check_of_an_alarm_is_stored_and_reaches_the_screens_of_their_grid(stack, city, worker,
                                                                                     redis_client):
    member = city.members[7]
    sensor = city.sensors[3]
    account = stack.account(member.terminal_id)
    bus = live.BusReader(redis_client, block_ms=500)
    bus.start_at_end()
    t = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=5)
    topic, payload = payloads.publication("alarm_check", member.terminal_id, t, sensor_id=sensor.sensor_id,
                                          alarm_id="gas-7731", outcome="false_alarm", note="steam from a kettle")
    assert topic == f"gcc/v1/terminal/{member.terminal_id}/alarm/check"
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    try:
        assert probe.publish(topic, payload) == "Success"
    finally:
        probe.close()
    [change] = _changes_until(bus, lambda c: isinstance(c, AlarmCheckChange) and c.terminal_id == member.terminal_id)
    assert (change.sensor_id, change.alarm_id, change.outcome, change.member_id, change.route_code) == \
        (sensor.sensor_id, "gas-7731", "false_alarm", member.member_id, member.grid_code)
    # committed before the bus heard of it
    assert owner_rows(stack, "select member_id, grid_code, outcome, note from alarm_checks "
                             "where terminal_id = %s and time = %s", member.terminal_id, t) == \
        [(member.member_id, member.grid_code, "false_alarm", "steam from a kettle")]


def test_the_screens_role_may_read_the_new_table_and_not_write_it(stack):
    dsn = stack.app_settings("dashboard").pg_dsn
    assert rows(dsn, "select count(*) from alarm_checks")[0][0] >= 0
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        rows(dsn, "insert into alarm_checks (time, terminal_id, sensor_id, alarm_id, outcome) "
                  "values (now(), 'T', 'S', 'A', 'confirmed')")
