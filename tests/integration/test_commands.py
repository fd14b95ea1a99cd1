"""The command module against the real database and Redis: a command is authorized, validated,
written with its audit row in one transaction, then told to the live state and the bus; a refusal
changes nothing and is audited; the audit log cannot be edited."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from core.catalogue import AlarmType
from core.roles import EVERYONE, UserRole
from dashboard.alarms import AcknowledgeAlarm
from dashboard.authz import Identity
from dashboard.commands import Commands
from ingest.live import LiveState
from ingest.model import Enriched
from ingest.store import Batch, Store, row_for
from telemetry import live
from telemetry.messages import DeviceAlarm

from .ingest_helpers import count

EVERY_ROLE = Identity("demo", EVERYONE)     # every role over the whole city


@pytest.fixture
def commands(stack, city):
    """The commands as the screens run them: the dashboard's own database role and Redis user (the
    owner could do what the screens may not; test_commands_as_dashboard_role.py tries every command)."""
    dashboard = stack.app_settings("dashboard")
    client = dashboard.redis_client()
    yield Commands(city, client, dashboard.pg_dsn, producer="test-commands")
    client.close()


def _open_alarm(settings, city, redis_client, sensor=None, alarm_id: str | None = None) -> tuple[str, object]:
    """A raised gas alarm, stored and live, as the ingest would leave it."""
    sensor = sensor or next(s for s in city.sensors if s.kind.value == "gas_detector")
    alarm = DeviceAlarm(alarm_id=alarm_id or f"A-{uuid.uuid4().hex[:8]}", sensor_id=sensor.sensor_id,
                        time=datetime.now(timezone.utc) - timedelta(seconds=5),
                        alarm_type=AlarmType.GAS_OVER_THRESHOLD, severity=4, state="raised")
    item = Enriched(alarm, sensor.grid_code, building_id=sensor.building_id, place=(sensor.lon, sensor.lat))
    batch = Batch()
    batch.add(*row_for(item, datetime.now(timezone.utc)), 0)
    store = Store(settings.pg_dsn)
    store.write(batch)
    store.close()
    writer = LiveState(redis_client)
    writer.ensure_schema()
    writer.apply([item])
    return alarm.alarm_id, sensor


def test_a_command_is_written_audited_and_told_to_the_live_state_and_the_bus(settings, city, redis_client,
                                                                             commands, db):
    alarm_id, sensor = _open_alarm(settings, city, redis_client)
    bus = live.BusReader(redis_client, block_ms=200)
    bus.start_at_end()
    result = commands.execute(EVERY_ROLE, AcknowledgeAlarm(sensor.sensor_id, alarm_id, note="crew on the way"),
                              "10.0.0.9")
    assert result.ok, result.reason
    assert count(db, "select count(*) from alarm_acknowledgements where alarm_id = %s and note = %s", alarm_id,
                 "crew on the way") == 1
    with db.cursor() as cur:
        cur.execute("select actor, roles, outcome, scope_code, after->>'by', source_address from audit_log "
                    "where target = %s", (f"alarm:{sensor.sensor_id}/{alarm_id}",))
        [(actor, roles, outcome, scope_code, by, source)] = cur.fetchall()
    assert (actor, outcome, scope_code, by, source) == ("demo", "done", sensor.grid_code, "demo", "10.0.0.9")
    assert "dispatcher" in roles
    assert result.summary.startswith("Gas over threshold 燃气超限 · ")
    told = [c for e in bus.read() if isinstance(e, live.Envelope) for c in e.changes
            if isinstance(c, live.AlarmAckChange) and c.alarm_id == alarm_id]
    assert [c.acknowledged_by for c in told] == ["demo"]


def test_a_refused_command_changes_nothing_and_is_audited_with_the_reason(settings, city, redis_client, commands, db):
    alarm_id, sensor = _open_alarm(settings, city, redis_client)
    viewer = Identity("wall-7", frozenset({UserRole.WALL_VIEWER}), "")
    result = commands.execute(viewer, AcknowledgeAlarm(sensor.sensor_id, alarm_id))
    assert not result.ok and "roles" in result.reason
    other_street = next(s for s in city.streets if not sensor.grid_code.startswith(s.code))
    elsewhere = Identity("disp-9", frozenset({UserRole.DISPATCHER}), other_street.code)
    result = commands.execute(elsewhere, AcknowledgeAlarm(sensor.sensor_id, alarm_id))
    assert not result.ok and "outside" in result.reason
    assert count(db, "select count(*) from alarm_acknowledgements where alarm_id = %s", alarm_id) == 0
    assert count(db, "select count(*) from audit_log where target = %s and outcome = 'refused'",
                 f"alarm:{sensor.sensor_id}/{alarm_id}") >= 1
    # twice: the second is refused (already acknowledged), audited, and writes nothing more
    assert commands.execute(EVERY_ROLE, AcknowledgeAlarm(sensor.sensor_id, alarm_id)).ok
    again = commands.execute(EVERY_ROLE, AcknowledgeAlarm(sensor.sensor_id, alarm_id))
    assert not again.ok and "already acknowledged by demo" in again.reason
    assert count(db, "select count(*) from alarm_acknowledgements where alarm_id = %s", alarm_id) == 1


def test_an_alarm_that_is_not_open_cannot_be_acknowledged(commands, db):
    result = commands.execute(EVERY_ROLE, AcknowledgeAlarm("S-NONE", "A-NEVER-RAISED"))
    assert not result.ok and "does not exist" in result.reason
    assert count(db, "select count(*) from audit_log where target = 'alarm:S-NONE/A-NEVER-RAISED' "
                     "and outcome = 'refused'") >= 1


def test_the_audit_log_cannot_be_edited_or_emptied(settings, db):
    with db.cursor() as cur:
        cur.execute("insert into audit_log (actor, roles, action, outcome) values ('t', '{}', 'test', 'done') "
                    "returning id")
        row_id = cur.fetchone()[0]
    db.commit()
    for sql in ("update audit_log set actor = 'x' where id = %s", "delete from audit_log where id = %s"):
        with pytest.raises(psycopg2.Error, match="append-only"), db.cursor() as cur:
            cur.execute(sql, (row_id,))
        db.rollback()
    with pytest.raises(psycopg2.Error, match="append-only"), db.cursor() as cur:
        cur.execute("truncate audit_log")
    db.rollback()


def test_the_screens_read_who_acknowledged_an_alarm_from_the_database(settings, city, redis_client, commands):
    from dashboard.authz import Scope
    from dashboard.queries import Queries

    alarm_id, sensor = _open_alarm(settings, city, redis_client)
    queries = Queries(city, redis_client, settings.pg_dsn)
    whole_city = Scope("", city.name)
    assert [a.acknowledged_by for a in queries.open_alarms(whole_city) if a.alarm_id == alarm_id] == [None]
    assert commands.execute(EVERY_ROLE, AcknowledgeAlarm(sensor.sensor_id, alarm_id)).ok
    [alarm] = [a for a in queries.open_alarms(whole_city) if a.alarm_id == alarm_id]
    assert alarm.acknowledged_by == "demo" and alarm.acknowledged_at is not None


def test_two_dispatchers_acknowledging_at_once_one_wins_and_the_other_is_told_who(settings, city, redis_client,
                                                                                 commands, db):
    import threading

    alarm_id, sensor = _open_alarm(settings, city, redis_client)
    results, start = [], threading.Barrier(2)

    def acknowledge(user: str) -> None:
        start.wait()
        results.append(commands.execute(Identity(user, frozenset({UserRole.DISPATCHER}), ""),
                                        AcknowledgeAlarm(sensor.sensor_id, alarm_id)))

    threads = [threading.Thread(target=acknowledge, args=(user,)) for user in ("disp-a", "disp-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(r.ok for r in results) == [False, True]
    [refused] = [r for r in results if not r.ok]
    assert refused.reason.startswith("already acknowledged by disp-")
    assert count(db, "select count(*) from alarm_acknowledgements where alarm_id = %s", alarm_id) == 1


def test_two_sensors_alarms_of_the_same_id_are_acknowledged_each_on_its_own(settings, city, redis_client, commands,
                                                                           db):
    from dashboard.authz import Scope
    from dashboard.queries import Queries

    first, second = [s for s in city.sensors if s.kind.value == "gas_detector"][:2]
    alarm_id, _ = _open_alarm(settings, city, redis_client, first)
    _open_alarm(settings, city, redis_client, second, alarm_id)
    bus = live.BusReader(redis_client, block_ms=200)
    bus.start_at_end()
    assert commands.execute(EVERY_ROLE, AcknowledgeAlarm(second.sensor_id, alarm_id)).ok
    assert count(db, "select count(*) from alarm_acknowledgements where alarm_id = %s and sensor_id = %s", alarm_id,
                 second.sensor_id) == 1
    told = [(c.sensor_id, c.alarm_id) for e in bus.read() if isinstance(e, live.Envelope) for c in e.changes
            if isinstance(c, live.AlarmAckChange)]
    assert told == [(second.sensor_id, alarm_id)]
    shown = {a.sensor_id: a.acknowledged_by for a in Queries(city, redis_client, settings.pg_dsn)
             .open_alarms(Scope("", city.name)) if a.alarm_id == alarm_id}
    assert shown == {first.sensor_id: None, second.sensor_id: "demo"}
    assert commands.execute(EVERY_ROLE, AcknowledgeAlarm(first.sensor_id, alarm_id)).ok   # not "already"
