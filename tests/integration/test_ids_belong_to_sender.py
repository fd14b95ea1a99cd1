"""An alarm, report or task id is valid only for the device that first used it: the forged clear and
the hijacked report id of issue 9, tried against the real broker, database and Redis."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from telemetry import live
from telemetry.topics import gateway_topic, terminal_topic

from ..support import wait_for
from .ingest_helpers import ThreadWorker, count
from .mqtt_helpers import publish_once


@pytest.fixture(scope="module")
def worker(stack, city):
    with ThreadWorker(stack, index=101, share_group=f"t{uuid.uuid4().hex[:8]}") as w:
        yield w


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _dead_letter(db, reason: str, topic_part: str):
    with db.cursor() as cur:
        cur.execute("select detail from dead_letters where reason = %s and topic like %s order by time desc limit 1",
                    (reason, f"%{topic_part}%"))
        row = cur.fetchone()
    db.rollback()
    return row[0] if row else None


def test_a_gateway_cannot_clear_another_buildings_alarm(stack, city, worker, db, redis_client):
    detectors = [s for s in city.sensors if s.kind.value == "gas_detector"]
    victim = detectors[0]
    attacker = next(s for s in detectors if s.gateway_id != victim.gateway_id)
    alarm_id = f"GAS-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    raised = {"ts": _iso(now - timedelta(seconds=30)), "alarm_id": alarm_id, "sensor_id": victim.sensor_id,
              "alarm_type": "gas_over_threshold", "severity": 4, "state": "raised", "value": 30.0}
    assert publish_once(stack.mosquitto.port, stack.account(victim.gateway_id),
                        gateway_topic(victim.gateway_id, "alarm"), orjson.dumps(raised)) == "Success"
    field = live.Keys.alarm_field(victim.sensor_id, alarm_id)
    wait_for(lambda: redis_client.hexists(live.Keys.OPEN_ALARMS, field), 10, "the alarm open")
    # the attacker's own sensor (so its gateway may speak for it), the victim's alarm id, a time ahead
    forged = {**raised, "sensor_id": attacker.sensor_id, "state": "cleared", "ts": _iso(now + timedelta(minutes=4))}
    assert publish_once(stack.mosquitto.port, stack.account(attacker.gateway_id),
                        gateway_topic(attacker.gateway_id, "alarm"), orjson.dumps(forged)) == "Success"
    detail = wait_for(lambda: _dead_letter(db, "foreign_id", attacker.gateway_id), 10, "the forged clear refused")
    assert victim.sensor_id in detail and attacker.sensor_id in detail and alarm_id in detail
    assert redis_client.hexists(live.Keys.OPEN_ALARMS, field)                       # still open on the wall
    assert count(db, "select count(*) from device_alarms where alarm_id = %s", alarm_id) == 1
    # and the victim's own real clear still works (nothing was poisoned)
    cleared = {**raised, "state": "cleared", "ts": _iso(now)}
    assert publish_once(stack.mosquitto.port, stack.account(victim.gateway_id),
                        gateway_topic(victim.gateway_id, "alarm"), orjson.dumps(cleared)) == "Success"
    wait_for(lambda: not redis_client.hexists(live.Keys.OPEN_ALARMS, field), 10, "the real clear applied")


def test_a_terminal_cannot_take_another_terminals_report_id(stack, city, worker, db):
    owner, thief = city.members[220], city.members[221]
    report_id = f"R-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    p = city.grid_by_code[thief.grid_code].boundary.representative_point()
    q = city.grid_by_code[owner.grid_code].boundary.representative_point()

    def report(member, point, t) -> bytes:
        return orjson.dumps({"ts": _iso(t), "report_id": report_id, "category": "exposed_garbage", "severity": 2,
                             "lat": point.y, "lon": point.x, "description": f"by {member.terminal_id}"})

    # the thief comes first with the id it saw, then the owner's real report arrives
    assert publish_once(stack.mosquitto.port, stack.account(thief.terminal_id),
                        terminal_topic(thief.terminal_id, "incident"), report(thief, p, now - timedelta(seconds=9))) \
        == "Success"
    wait_for(lambda: count(db, "select count(*) from incident_reports where report_id = %s", report_id), 10,
             "the first report stored")
    assert publish_once(stack.mosquitto.port, stack.account(owner.terminal_id),
                        terminal_topic(owner.terminal_id, "incident"), report(owner, q, now)) == "Success"
    detail = wait_for(lambda: _dead_letter(db, "foreign_id", owner.terminal_id), 10, "the second sender refused")
    assert thief.terminal_id in detail and owner.terminal_id in detail
    # an id is its first sender's: the refusal names both, and nothing of the second was stored
    assert count(db, "select count(*) from incident_reports where report_id = %s", report_id) == 1


def test_a_redelivered_message_of_the_ids_owner_is_not_foreign(stack, city, worker, db):
    member = city.members[222]
    p = city.grid_by_code[member.grid_code].boundary.representative_point()
    t = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=5)
    payload = orjson.dumps({"ts": _iso(t), "report_id": f"R-{uuid.uuid4().hex[:8]}", "category": "noise",
                            "severity": 1, "lat": p.y, "lon": p.x})
    for _ in range(2):   # the same message twice, as a redelivery after a crash would bring it
        assert publish_once(stack.mosquitto.port, stack.account(member.terminal_id),
                            terminal_topic(member.terminal_id, "incident"), payload) == "Success"
    wait_for(lambda: count(db, "select count(*) from incident_reports where terminal_id = %s and time = %s",
                           member.terminal_id, t), 10, "stored")
    assert _dead_letter(db, "foreign_id", member.terminal_id) is None
