"""Redis live state: each message applied once, in order, and only real changes reported."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from core.catalogue import AlarmType
from ingest.live import LiveState
from ingest.model import Enriched
from telemetry import live as contract
from telemetry.live import Keys
from telemetry.messages import DeviceAlarm, Fix, IncidentReport, SensorReading, TerminalStatus

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
GRID = "350102001001001"


@pytest.fixture
def live(redis_client):
    writer = LiveState(redis_client)
    writer.ensure_schema()
    return writer


def _of(changes, kind):
    return [c for c in changes if isinstance(c, kind)]


def _fix(tid, seconds, lon=119.29, lat=26.1):
    return Enriched(Fix(terminal_id=tid, time=T0 + timedelta(seconds=seconds), lat=lat, lon=lon, source="gcc"),
                    GRID, "M-" + tid, home_grid_code=GRID)


def _alarm(sensor, alarm_id, state, seconds):
    return Enriched(DeviceAlarm(alarm_id=alarm_id, sensor_id=sensor, time=T0 + timedelta(seconds=seconds),
                                alarm_type=AlarmType.GAS_OVER_THRESHOLD, severity=4, state=state), GRID)


def test_a_mixed_batch_reports_each_change_once_and_a_replay_reports_nothing(live):
    tid, sensor, uid = f"T-{uuid.uuid4().hex[:6]}", f"S-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    report = Enriched(IncidentReport(report_id=f"R-{uid}", terminal_id=tid, time=T0, category="noise", severity=1,
                                     lat=26.1, lon=119.29), GRID, "M-" + tid, home_grid_code=GRID)
    reading = Enriched(SensorReading(sensor_id=sensor, time=T0, quantity="gas_lel", value=1.5), GRID)
    batch = [report, _alarm(sensor, f"A-{uid}", "raised", 1), _fix(tid, 2), reading]
    changes = live.apply(batch)
    assert [r.report_id for r in _of(changes, contract.ReportChange)] == [f"R-{uid}"]
    assert [a.alarm_id for a in _of(changes, contract.AlarmChange)] == [f"A-{uid}"]
    assert [f.terminal_id for f in _of(changes, contract.FixChange)] == [tid]
    assert [r.sensor_id for r in _of(changes, contract.ReadingChange)] == [sensor]
    assert not live.apply(batch)


def test_an_older_fix_does_not_overwrite_a_newer_one(live, redis_client):
    tid = f"T-{uuid.uuid4().hex[:6]}"
    assert live.apply([_fix(tid, 10, lon=119.30)])
    assert not live.apply([_fix(tid, 5, lon=119.28)])
    assert redis_client.hget(Keys.terminal(tid), "lon") == b"119.3"


def test_only_the_newest_fix_of_a_terminal_in_a_batch_is_applied(live):
    tid = f"T-{uuid.uuid4().hex[:6]}"
    changes = live.apply([_fix(tid, 3, lon=119.27), _fix(tid, 9, lon=119.31), _fix(tid, 6, lon=119.29)])
    assert [f.lon for f in _of(changes, contract.FixChange)] == [119.31]


def test_a_new_alarm_of_the_same_sensor_and_type_replaces_the_open_one(live, redis_client):
    sensor, uid = f"S-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    live.apply([_alarm(sensor, f"A1-{uid}", "raised", 1)])
    changes = live.apply([_alarm(sensor, f"A2-{uid}", "raised", 2)])
    assert sorted((a.alarm_id, a.state) for a in changes) == [(f"A1-{uid}", "cleared"), (f"A2-{uid}", "raised")]
    assert redis_client.hexists(Keys.OPEN_ALARMS, Keys.alarm_field(sensor, f"A2-{uid}"))
    assert not redis_client.hexists(Keys.OPEN_ALARMS, Keys.alarm_field(sensor, f"A1-{uid}"))
    assert [a.state for a in live.apply([_alarm(sensor, f"A2-{uid}", "cleared", 3)])] == ["cleared"]
    assert not redis_client.hexists(Keys.OPEN_ALARMS, Keys.alarm_field(sensor, f"A2-{uid}"))


def test_a_clear_that_arrives_before_its_raise_keeps_the_alarm_closed(live, redis_client):
    sensor, alarm_id = f"S-{uuid.uuid4().hex[:6]}", f"A-{uuid.uuid4().hex[:6]}"
    live.apply([_alarm(sensor, alarm_id, "cleared", 5)])
    assert not live.apply([_alarm(sensor, alarm_id, "raised", 1)])
    assert not redis_client.hexists(Keys.OPEN_ALARMS, Keys.alarm_field(sensor, alarm_id))


def test_an_older_alarm_arriving_after_a_newer_one_does_not_close_it(live, redis_client):
    sensor, uid = f"S-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    live.apply([_alarm(sensor, f"NEW-{uid}", "raised", 30)])
    assert not live.apply([_alarm(sensor, f"OLD-{uid}", "raised", 10)])
    assert redis_client.hexists(Keys.OPEN_ALARMS, Keys.alarm_field(sensor, f"NEW-{uid}"))
    assert not redis_client.hexists(Keys.OPEN_ALARMS, Keys.alarm_field(sensor, f"OLD-{uid}"))


def test_a_quantity_named_like_a_hash_field_is_kept_apart(live, redis_client):
    sensor = f"S-{uuid.uuid4().hex[:6]}"
    reading = Enriched(SensorReading(sensor_id=sensor, time=T0, quantity="grid", value=2.0), GRID)
    assert live.apply([reading])
    assert redis_client.hget(Keys.sensor(sensor), "grid_code") == GRID.encode()


def test_a_terminal_silent_too_long_is_swept_to_silent_once(live, redis_client):
    tid = f"T-{uuid.uuid4().hex[:6]}"
    live.apply([_fix(tid, 1)], now=1000.0)  # last heard at t=1000 (epoch seconds)
    home = {tid: GRID}.get
    changed = live.sweep_silent(home, now=1000.0 + contract.SILENT_AFTER_S + 1)
    assert [(c.terminal_id, c.state, c.home_grid_code) for c in changed if c.terminal_id == tid] == \
        [(tid, "silent", GRID)]
    assert redis_client.hget(Keys.terminal(tid), "state") == b"silent"
    assert all(c.terminal_id != tid for c in live.sweep_silent(home, now=1000.0 + 200))


def test_what_the_writer_stores_the_contract_reads_back(live, redis_client):
    tid, sensor, uid = f"T-{uuid.uuid4().hex[:6]}", f"S-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    live.apply([_fix(tid, 30, lon=119.301, lat=26.08), _alarm(sensor, f"A-{uid}", "raised", 31)])
    [terminal] = contract.read_terminals(redis_client, [tid], now=T0.timestamp() + 40)
    assert (terminal.lon, terminal.lat, terminal.grid_code, terminal.state) == (119.301, 26.08, GRID, "online")
    assert terminal.member_id == "M-" + tid and terminal.t == (T0 + timedelta(seconds=30)).timestamp()
    [alarm] = [a for a in contract.read_open_alarms(redis_client) if a.alarm_id == f"A-{uid}"]
    assert (alarm.sensor_id, alarm.severity, alarm.t) == (sensor, 4, (T0 + timedelta(seconds=31)).timestamp())


def test_a_silent_member_that_reports_again_comes_back_online_as_a_status_too(live, redis_client):
    """Screens that show states, not positions (the dispatcher console), must hear of it."""
    tid = f"T-{uuid.uuid4().hex[:6]}"
    live.apply([_fix(tid, 1)], now=1000.0)
    [silent] = [c for c in live.sweep_silent({tid: GRID}.get, now=1000.0 + contract.SILENT_AFTER_S + 1)
                if c.terminal_id == tid]
    assert silent.state == "silent"
    back = live.apply([_fix(tid, 5)], now=1200.0)
    assert [(c.KIND, getattr(c, "state", None)) for c in back] == [("status", "online"), ("fix", None)]
    assert not _of(live.apply([_fix(tid, 6)], now=1201.0), contract.StatusChange)   # already online


def test_the_sweep_keeps_a_members_sos(live, redis_client):
    tid = f"T-{uuid.uuid4().hex[:6]}"
    live.apply([_fix(tid, 1), Enriched(TerminalStatus(terminal_id=tid, time=T0 + timedelta(seconds=2), state="online",
                                                      sos=True, source="gcc"), GRID, "M-" + tid,
                                       home_grid_code=GRID)], now=1000.0)
    [silent] = [c for c in live.sweep_silent({tid: GRID}.get, now=1000.0 + contract.SILENT_AFTER_S + 1)
                if c.terminal_id == tid]
    assert silent.sos is True


def test_a_reading_that_carries_only_a_sum_keeps_its_value(live, redis_client):
    sensor = f"S-{uuid.uuid4().hex[:6]}"
    first = live.apply([Enriched(SensorReading(sensor_id=sensor, time=T0, quantity="volume", value_sum=12.5), GRID)])
    assert [c.value_sum for c in first] == [12.5]
    assert redis_client.hget(Keys.sensor(sensor), contract.SensorField.quantity("volume")).endswith(b"|12.5")
    later = live.apply([Enriched(SensorReading(sensor_id=sensor, time=T0 + timedelta(seconds=60), quantity="volume",
                                               value_sum=13.0), GRID)])
    assert [c.value_sum for c in later] == [13.0]   # a new sum is a change


def test_a_redis_with_the_old_key_layout_is_reset_once(redis_client):
    redis_client.delete(Keys.SCHEMA)
    redis_client.hset(Keys.terminal("T-OLD-LAYOUT"), mapping={"grid": GRID, "state": "unknown"})
    writer = LiveState(redis_client)
    assert writer.ensure_schema()
    assert not redis_client.exists(Keys.terminal("T-OLD-LAYOUT"))
    assert not writer.ensure_schema()


def test_two_sensors_using_the_same_alarm_id_keep_their_own_alarms(live, redis_client):
    """Live keys name the device: one sensor's clear cannot close another's alarm of the same id
    (identity is (sensor, alarm id) in every key: the ingest refuses only a clear by a sensor that
    never raised the id, as foreign_id, to name the forger)."""
    a, b, alarm_id = f"S-{uuid.uuid4().hex[:6]}", f"S-{uuid.uuid4().hex[:6]}", f"A-{uuid.uuid4().hex[:6]}"
    live.apply([_alarm(a, alarm_id, "raised", 1), _alarm(b, alarm_id, "raised", 1)])
    live.apply([_alarm(a, alarm_id, "cleared", 200)])          # far ahead: would have poisoned b's order
    assert redis_client.hexists(Keys.OPEN_ALARMS, Keys.alarm_field(b, alarm_id))
    assert not redis_client.hexists(Keys.OPEN_ALARMS, Keys.alarm_field(a, alarm_id))
    assert [c.state for c in live.apply([_alarm(b, alarm_id, "cleared", 3)])] == ["cleared"]


def test_a_clock_ahead_within_the_allowed_skew_cannot_hold_back_the_next_fixes(live, redis_client):
    tid = f"T-{uuid.uuid4().hex[:6]}"
    received = T0 + timedelta(seconds=100)
    ahead = Enriched(Fix(terminal_id=tid, time=received + timedelta(minutes=4), lat=26.1, lon=119.30, source="gcc"),
                     GRID, "M-" + tid, home_grid_code=GRID, received_at=received)
    live.apply([ahead])
    later = received + timedelta(seconds=5)
    right = Enriched(Fix(terminal_id=tid, time=later, lat=26.1, lon=119.31, source="gcc"), GRID, "M-" + tid,
                     home_grid_code=GRID, received_at=later)
    assert _of(live.apply([right]), contract.FixChange)   # taken: the fake future time counted as its arrival
    assert redis_client.hget(Keys.terminal(tid), "lon") == b"119.31"


def _report(tid: str, n: int, seconds: float, description: str | None = None) -> Enriched:
    return Enriched(IncidentReport(report_id=f"R-{n}", terminal_id=tid, time=T0 + timedelta(seconds=seconds),
                                   category="noise", severity=1, lat=26.1, lon=119.29, description=description,
                                   photo_ref="photos/x.jpg"), GRID, "M-" + tid, home_grid_code=GRID)


def test_a_terminal_keeps_at_most_its_newest_reports_in_the_live_view(live, redis_client):
    """A flooding terminal cannot fill Redis: past REPORTS_PER_TERMINAL its oldest leave the live
    view (the database keeps them), atomically in the writer's script; other terminals keep theirs."""
    flooder, neighbour = f"T-{uuid.uuid4().hex[:6]}", f"T-{uuid.uuid4().hex[:6]}"
    live.apply([_report(neighbour, 0, 1)])
    cap = contract.REPORTS_PER_TERMINAL
    for start in range(0, cap + 20, 25):                  # in several batches, newest last
        live.apply([_report(flooder, n, 10 + n) for n in range(start, min(start + 25, cap + 20))])
    mine = [r for r in contract.read_recent_reports(redis_client) if r.terminal_id == flooder]
    assert sorted(int(r.report_id[2:]) for r in mine) == list(range(20, cap + 20))
    assert redis_client.zcard(Keys.reports_of(flooder)) == cap
    assert not redis_client.exists(Keys.report(Keys.report_member(flooder, "R-0")))     # its JSON is gone too
    assert [r.terminal_id for r in contract.read_recent_reports(redis_client) if r.terminal_id == neighbour] == \
        [neighbour]
    assert not live.apply([_report(flooder, 999, 5)])     # older than all it keeps: not news, not kept


def test_the_live_state_keeps_a_report_without_its_description_and_photo_but_the_bus_change_has_them(
        live, redis_client):
    tid = f"T-{uuid.uuid4().hex[:6]}"
    [change] = live.apply([_report(tid, 1, 3, description="x" * 2000)])
    assert change.description == "x" * 2000 and change.photo_ref == "photos/x.jpg"   # what the bus carries
    stored = redis_client.get(Keys.report(Keys.report_member(tid, "R-1")))
    assert len(stored) < 600 and b"xxxx" not in stored
    [kept] = [r for r in contract.read_recent_reports(redis_client) if r.terminal_id == tid]
    assert (kept.description, kept.photo_ref, kept.category) == (None, None, "noise")
