"""The ingest after the security review of issue 9, without servers: tighter budgets for reports and
alarms, one rate_limited dead letter per device and window, capped dead letters, the forged-clear
check (and nothing else refused for a shared id), gateway wills timed at receipt, health that sees a
failing live state and an abandoned batch, and the worker reconnecting after one."""
from __future__ import annotations

import queue
import random
import threading
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import redis

from core.catalogue import AlarmType
from ingest.limits import Budgets, RateLimiter, RefusalDigest
from ingest.live import LiveState
from ingest.metrics import Health, LiveHealth, Progress, assess, is_out_of_memory
from ingest.model import Enriched, Inbound, Outcome, Rejection
from ingest.stages import Registry, digest_refusals, process_batch, refuse_forged_clears, stamp_will
from ingest.store import DEAD_LETTER_DETAIL_MAX, DEAD_LETTER_TOPIC_MAX, dead_letter_row
from ingest.worker import Worker, WorkerConfig
from simulator import payloads
from simulator.citygen import SCALES, generate
from simulator.devices import GatewaySim, SimConfig, TerminalSim
from telemetry.decoders import decode
from telemetry.messages import DeviceAlarm, GatewayStatus
from telemetry.topics import gateway_topic, terminal_topic

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def registry():
    return Registry(generate(SCALES["demo"], seed=7))


def _inbound(topic: str, payload: dict | bytes, at: datetime = NOW, retain: bool = False) -> Inbound:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Inbound(topic, body, 1, retain, at)


def _report(registry, member_index: int, n: int, at: datetime = NOW) -> Inbound:
    member = registry.city.members[member_index]
    p = registry.city.grid_by_code[member.grid_code].boundary.representative_point()
    return _inbound(terminal_topic(member.terminal_id, "incident"),
                    {"ts": at.isoformat(), "report_id": f"R-{n}", "category": "noise", "severity": 1, "lat": p.y,
                     "lon": p.x}, at)


def _reasons(outcomes: list[Outcome]) -> list[str | None]:
    return [o.rejection.reason if o.rejection else None for o in outcomes]


# --- budgets per kind ---------------------------------------------------------------------------------

def test_a_terminal_past_its_report_budget_is_rate_limited_while_its_fixes_and_others_reports_pass(registry):
    budgets = Budgets.of(reports_per_min=10, report_burst=30, alarms_per_min=120, alarm_burst=300)
    member = registry.city.members[0]
    p = registry.city.grid_by_code[member.grid_code].boundary.representative_point()
    flood = [_report(registry, 0, n) for n in range(35)]
    fix = _inbound(terminal_topic(member.terminal_id, "fix"), {"ts": NOW.isoformat(), "lat": p.y, "lon": p.x})
    other = _report(registry, 1, 99)
    outcomes = process_batch([*flood, fix, other], registry, RateLimiter(50, 5000), budgets)
    assert _reasons(outcomes) == [None] * 30 + ["rate_limited"] * 5 + [None, None]
    assert "incident reports faster than 10 a minute (bursts of 30)" in outcomes[30].rejection.detail
    later = process_batch([_report(registry, 0, 200, NOW + timedelta(seconds=6))], registry, None, budgets)
    assert _reasons(later) == [None]                  # 6 s later: one more token, at 10 a minute


def test_a_gateway_past_its_alarm_budget_is_rate_limited(registry):
    budgets = Budgets.of(reports_per_min=10, report_burst=30, alarms_per_min=120, alarm_burst=3)
    sensor = next(s for s in registry.city.sensors if s.kind.value == "gas_detector")
    alarms = [_inbound(gateway_topic(sensor.gateway_id, "alarm"),
                       {"ts": NOW.isoformat(), "alarm_id": f"A-{n}", "sensor_id": sensor.sensor_id,
                        "alarm_type": "gas_over_threshold", "severity": 4, "state": "raised"}) for n in range(5)]
    assert _reasons(process_batch(alarms, registry, None, budgets)) == [None] * 3 + ["rate_limited"] * 2


def test_the_simulators_busiest_demo_stays_far_within_the_budgets(registry):
    """README's heaviest demo (--speedup 10 --fault-rate 100): one real minute is 10 simulated."""
    cfg, sent = SimConfig(speedup=10, fault_rate=100), []
    send = lambda topic, payload: sent.append(topic) or True  # noqa: E731
    city, rng = registry.city, random.Random(3)
    sensors: dict[str, list] = {}
    for s in city.sensors:
        sensors.setdefault(s.gateway_id, []).append(s)
    devices = [TerminalSim(m, city.grid_by_code[m.grid_code], cfg, random.Random(rng.random()), send, [])
               for m in city.members[:200]]
    devices += [GatewaySim(g, city.building_by_id[g.building_id], sensors[g.gateway_id], cfg,
                           random.Random(rng.random()), send) for g in city.gateways[:300]]
    for step in range(120):                              # 600 simulated seconds
        for device in devices:
            device.step(NOW + timedelta(seconds=5 * step), 5.0)
    per_device: dict[tuple[str, str], int] = {}
    for topic in sent:
        parts = topic.split("/")
        per_device[(parts[3], parts[4])] = per_device.get((parts[3], parts[4]), 0) + 1
    assert max((n for (_, leaf), n in per_device.items() if leaf == "incident"), default=0) <= 2   # budget: 10
    assert max((n for (_, leaf), n in per_device.items() if leaf == "alarm"), default=0) <= 12     # budget: 120


# --- one rate_limited dead letter per device and window -----------------------------------------------

def test_only_the_first_refusal_of_a_window_is_written_and_the_next_says_how_many_were_not():
    digest = RefusalDigest(window_s=60)
    refused = Rejection("rate_limited", "too fast")
    assert digest.admit("T1", refused, 100.0) == refused
    assert [digest.admit("T1", refused, 100.0 + i) for i in range(1, 6)] == [None] * 5
    assert digest.admit("T2", refused, 101.0) == refused           # devices are counted apart
    carried = digest.admit("T1", refused, 160.0)
    assert carried.reason == "rate_limited"
    assert carried.detail.startswith("too fast (5 more since 1970-01-01T00:01:40+00:00")
    assert digest.admit("T1", refused, 230.0) == refused           # nothing was held back since


def test_a_device_quiet_for_a_window_is_forgotten_unless_it_has_a_count_to_carry():
    digest = RefusalDigest(window_s=60, forget_after_s=3600)
    refused = Rejection("rate_limited", "x")
    digest.admit("quiet", refused, 0.0)
    digest.admit("held", refused, 0.0)
    digest.admit("held", refused, 1.0)
    digest.admit("other", refused, RefusalDigest.PRUNE_EVERY_S + 1)
    assert len(digest) == 2                                        # "held" still has 1 to tell


def test_refusals_beyond_the_first_are_acknowledged_and_counted_only(registry):
    outcomes = process_batch([_report(registry, 2, n) for n in range(5)], registry, RateLimiter(1, 2))
    assert digest_refusals(outcomes, RefusalDigest(60)) == 2
    assert [o.counted_only for o in outcomes] == [False, False, False, True, True]
    assert _reasons(outcomes) == [None, None, "rate_limited", "rate_limited", "rate_limited"]


def test_a_dead_letter_keeps_at_most_512_bytes_of_topic_and_1_kb_of_detail():
    topic = "gcc/v1/terminal/T1/" + "网" * 1000
    row = dead_letter_row(Inbound(topic, b"{}", 1, False, NOW), Rejection("wrong_topic", "d" * 50_000), "w")
    assert len(row[1].encode()) <= DEAD_LETTER_TOPIC_MAX and row[1].endswith("...")
    assert len(row[6]) == DEAD_LETTER_DETAIL_MAX and row[6].endswith("...")
    short = dead_letter_row(Inbound("a/b", b"{}", 1, False, NOW), Rejection("x", "why"), "w")
    assert (short[1], short[6]) == ("a/b", "why")


# --- forged clears: the one check across devices ---------------------------------------------------------

def _alarm_outcome(sensor: str, alarm_id: str, state: str) -> Outcome:
    alarm = DeviceAlarm(alarm_id=alarm_id, sensor_id=sensor, time=NOW, alarm_type=AlarmType.GAS_OVER_THRESHOLD,
                        severity=4, state=state)
    return Outcome(Inbound("gcc/v1/gateway/G/alarm", b"{}", 1, False, NOW), accepted=[Enriched(alarm)])


def test_a_clear_of_an_alarm_its_sensor_never_raised_but_another_did_is_foreign_and_names_both():
    outcomes = [_alarm_outcome("gas-A", "ALARM-1", "cleared")]
    assert refuse_forged_clears(outcomes, {"ALARM-1": {"gas-B"}}) == 1
    rejection = outcomes[0].rejection
    assert rejection.reason == "foreign_id" and not outcomes[0].accepted
    assert "'gas-A'" in rejection.detail and "'gas-B'" in rejection.detail and "'ALARM-1'" in rejection.detail


@pytest.mark.parametrize("batch, stored", [
    ([("gas-A", "cleared")], {"ALARM-1": {"gas-A", "gas-B"}}),     # its own raise is stored
    ([("gas-A", "raised"), ("gas-A", "cleared")], {"ALARM-1": {"gas-B"}}),   # raised earlier in the batch
    ([("gas-A", "cleared")], {}),                                  # nobody raised it: nothing to forge
    ([("gas-A", "raised")], {"ALARM-1": {"gas-B"}}),               # a raise is never refused for reuse
])
def test_nothing_else_is_refused_for_an_alarm_id_another_sensor_uses(batch, stored):
    outcomes = [_alarm_outcome(sensor, "ALARM-1", state) for sensor, state in batch]
    assert refuse_forged_clears(outcomes, stored) == 0
    assert all(o.rejection is None for o in outcomes)


# --- gateway wills ---------------------------------------------------------------------------------------

def test_a_gateway_will_is_timed_at_receipt_unless_the_broker_delivers_it_retained():
    connected_at = NOW - timedelta(days=8)
    topic, will = payloads.gateway_status("GW-1", connected_at, "offline", will=True)
    [status] = decode(topic, will, NOW)
    assert isinstance(status, GatewayStatus) and status.will and status.time == connected_at
    assert stamp_will(status, _inbound(topic, will)).time == NOW
    assert stamp_will(status, _inbound(topic, will, retain=True)).time == connected_at


def test_the_simulators_gateways_mark_their_wills_as_wills(registry):
    city = registry.city
    gateway = city.gateways[0]
    sim = GatewaySim(gateway, city.building_by_id[gateway.building_id], [], SimConfig(), random.Random(1),
                     lambda t, p: True)
    topic, will = sim.will(NOW)
    assert topic == gateway_topic(gateway.gateway_id, "status")
    assert orjson.loads(will) == {"ts": "2026-11-21T08:00:00.000Z", "state": "offline", "will": True}


# --- health ---------------------------------------------------------------------------------------------

def _health(**changes) -> tuple[bool, dict]:
    return assess(Health(**{"broker_up": True, "pending": 0, "stalled_for": 0.0, "since_commit": 1.0,
                            "stall_after_s": 30.0, **changes}))


def test_a_worker_whose_live_updates_keep_failing_is_unhealthy_and_says_why():
    assert _health(live_failing_for=10.0)[0]                      # failing, not for long yet
    ok, detail = _health(live_failing_for=31.0)
    assert not ok and detail["live"] == "failing" and "every live update has failed for 31 s" in detail["reason"]
    ok, detail = _health(live_failing_for=0.1, live_out_of_memory=True)
    assert not ok and detail["live"] == "out of memory" and "Redis is out of memory" in detail["reason"]


def test_live_health_counts_from_the_first_failure_since_the_last_success():
    now = [0.0]
    health = LiveHealth(clock=lambda: now[0])
    health.failed(redis.ConnectionError("gone"))
    now[0] = 20.0
    health.failed(redis.ConnectionError("gone"))
    assert health.failing_for() == 20.0 and not health.out_of_memory
    health.failed(redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."))
    assert health.out_of_memory
    health.ok()
    assert health.failing_for() == 0.0 and not health.out_of_memory
    assert is_out_of_memory(redis.ResponseError("Error running script: OOM command not allowed when used memory"))


def test_an_abandoned_batch_is_unhealthy_until_the_next_commit():
    progress = Progress(clock=lambda: 0.0)
    progress.abandoned()
    ok, detail = _health(abandoned=progress.abandoned_since_commit)
    assert not ok and detail["abandoned_batches"] == 1 and "abandoned" in detail["reason"]
    progress.committed()
    assert _health(abandoned=progress.abandoned_since_commit)[0]


# --- an exception that escapes the chain ------------------------------------------------------------------

class _Source:
    """What the worker needs of its broker connection; counts the reconnects it is asked for."""
    kind = "mqtt"

    def __init__(self) -> None:
        self.inbox: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.connected.set()
        self.reconnects = 0

    def reconnect(self) -> None:
        self.reconnects += 1


def test_a_batch_abandoned_by_an_escaped_exception_makes_the_worker_reconnect_count_and_say_so():
    source = _Source()
    worker = Worker("ingest-t", source, None, LiveState(redis.Redis(port=1)), None, WorkerConfig())
    worker.stop_event.set()                                        # no pause after the error
    source.inbox.put(object())

    def escapes(deliveries):
        raise RuntimeError("a bug outside the contained parts (in this test)")

    worker.handle = escapes
    worker._step()
    assert source.reconnects == 1
    assert worker.metrics.registry.get_sample_value("gcc_ingest_abandoned_batches_total",
                                                    {"worker": "ingest-t"}) == 1
    ok, detail = worker.health()
    assert not ok and detail["abandoned_batches"] == 1
    worker._step()                                                 # nothing in hand: no reconnect
    assert source.reconnects == 1


def test_the_new_settings_reach_the_worker():
    from config.settings import Settings

    settings = Settings(_env_file=None, ingest_report_rate_per_min=3, ingest_report_burst=4,
                        ingest_alarm_rate_per_min=5, ingest_alarm_burst=6, ingest_refusal_window_s=7,
                        ingest_live_unhealthy_after_s=8)
    c = WorkerConfig.from_settings(settings)
    assert (c.report_rate_per_min, c.report_burst, c.alarm_rate_per_min, c.alarm_burst, c.refusal_window_s,
            c.live_unhealthy_after_s) == (3, 4, 5, 6, 7, 8)
