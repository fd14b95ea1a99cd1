"""No poison batches, no invisible stalls (issue 9), against the real broker, database and Redis:
a row the database refuses costs one dead letter and a few commits, a bug costs only the message
that triggers it, a stalled worker says so, floods and QoS 0 are bounded, dead letters are capped,
and every hypertable has its retention."""
from __future__ import annotations

import hashlib
import itertools
import math
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import redis

from database import timescale
from ingest.limits import RefusalDigest
from ingest.model import Delivery, Inbound
from ingest.service import build_worker
from ingest.stages import RateLimiter
from ingest.store import DEAD_LETTER_PAYLOAD_MAX, Store
from stack import free_port
from telemetry.topics import gateway_topic, terminal_topic

from ..support import wait_for
from .ingest_helpers import RecordingReceipt, ThreadWorker, count, fix_payload, subscribed
from .mqtt_helpers import MqttProbe

pytestmark = pytest.mark.slow

POOL = range(550, 590)     # the members whose terminals these tests use (other tests use lower ones)
_INDEXES = itertools.count(160)


@pytest.fixture
def driven(settings, city):
    """A worker driven batch by batch through handle() (its loop not started)."""
    worker = build_worker(settings, next(_INDEXES))
    worker.live.ensure_schema()
    yield worker
    worker.store.close()


@pytest.fixture(scope="module")
def running(stack, city):
    with ThreadWorker(stack, index=97, share_group=f"t{uuid.uuid4().hex[:8]}") as tw:
        yield tw


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _member(city, i: int):
    return city.members[POOL[i % len(POOL)]]


def _fixes(city, n: int, t0: datetime, **extra_at) -> list[Delivery]:
    """n fixes from the pool's terminals in turn, one millisecond apart; extra_at["f<i>"] = more
    fields of fix i."""
    out = []
    for i in range(n):
        member = _member(city, i)
        p = city.grid_by_code[member.grid_code].boundary.representative_point()
        body = fix_payload(t0 + timedelta(milliseconds=i), p.x, p.y, **extra_at.get(f"f{i}", {}))
        inbound = Inbound(terminal_topic(member.terminal_id, "fix"), body, 1, False, datetime.now(timezone.utc))
        out.append(Delivery(inbound, RecordingReceipt()))
    return out


def _stored(db, city, t0: datetime, n: int) -> int:
    """How many of the n fixes from t0 on (`_fixes`) are stored: only the pool's terminals count (a
    fix of another test's terminal may fall in the same milliseconds)."""
    return count(db, "select count(*) from positions where time >= %s and time < %s and terminal_id = any(%s)", t0,
                 t0 + timedelta(milliseconds=n), [_member(city, i).terminal_id for i in range(len(POOL))])


def _dead_letters(db, worker_name: str, reason: str) -> list[tuple]:
    db.rollback()
    with db.cursor() as cur:
        cur.execute("select topic, detail, payload from dead_letters where worker = %s and reason = %s",
                    (worker_name, reason))
        return cur.fetchall()


def _value(worker, name: str, **labels) -> float:
    return worker.metrics.registry.get_sample_value(name, {"worker": worker.name, **labels}) or 0.0


# --- a row the database refuses ---------------------------------------------------------------------

def test_one_row_the_database_refuses_among_2000_costs_one_dead_letter_and_a_few_commits(driven, city, db):
    t0 = _now() - timedelta(hours=5, minutes=uuid.uuid4().int % 50)
    bad = 1234
    deliveries = _fixes(city, 2000, t0, **{f"f{bad}": {"accuracy_m": 1e39}})   # valid JSON, out of range for `real`
    commits_before = _value(driven, "gcc_ingest_commits_total")
    driven.handle(deliveries)
    commits = _value(driven, "gcc_ingest_commits_total") - commits_before
    assert _stored(db, city, t0, 2000) == 1999
    [(topic, detail, _)] = _dead_letters(db, driven.name, "db_rejected")
    assert topic == deliveries[bad].inbound.topic and detail.startswith("22003")
    assert commits <= math.ceil(math.log2(2000)) + 2          # ~12 commits, not 2,000
    assert _value(driven, "gcc_ingest_narrowed_batches_total") == 1
    assert [d.receipt.settled for i, d in enumerate(deliveries) if i != bad] == [[None]] * 1999
    [[rejection]] = [deliveries[bad].receipt.settled]
    assert rejection.reason == "db_rejected"


def test_a_clean_batch_is_one_commit(driven, city, db):
    t0 = _now() - timedelta(hours=6, minutes=uuid.uuid4().int % 50)
    before = _value(driven, "gcc_ingest_commits_total")
    driven.handle(_fixes(city, 500, t0))
    assert _value(driven, "gcc_ingest_commits_total") - before == 1
    assert _stored(db, city, t0, 500) == 500


# --- an unexpected exception (a bug) -------------------------------------------------------------------

def test_a_message_that_makes_storing_raise_is_dead_lettered_as_poison_after_3_tries_and_the_rest_is_stored(
        driven, city, db):
    t0 = _now() - timedelta(hours=7, minutes=uuid.uuid4().int % 50)
    deliveries = _fixes(city, 40, t0)
    bad_terminal = _member(city, 17).terminal_id
    real_write, alone = driven.store.write, []

    def write(batch):
        rows = batch.rows.get("positions", [])
        if any(row[1] == bad_terminal for row in rows):
            alone.append(len(rows) == 1)
            raise TypeError("cannot encode this row (a bug, in this test)")
        return real_write(batch)

    driven.store.write = write
    driven.handle(deliveries)
    assert _stored(db, city, t0, 40) == 39
    [(topic, detail, _)] = _dead_letters(db, driven.name, "poison")
    assert bad_terminal in topic and detail.startswith("store: TypeError") and "a bug" in detail
    assert alone.count(True) == 3
    assert _value(driven, "gcc_ingest_exceptions_total", part="store") >= 3
    driven.store.write = real_write
    t1 = t0 + timedelta(minutes=1)
    driven.handle(_fixes(city, 10, t1))      # and the worker goes on
    assert _stored(db, city, t1, 10) == 10


def test_a_message_that_makes_the_live_update_raise_is_stored_acknowledged_and_dead_lettered(driven, city, db,
                                                                                            redis_client):
    t0 = _now() - timedelta(seconds=30)
    deliveries = _fixes(city, 20, t0)
    bad_terminal = _member(city, 5).terminal_id
    real_apply = driven.live.apply

    def apply(items, now=None):
        if any(getattr(e.message, "terminal_id", None) == bad_terminal for e in items):
            raise KeyError("live bug (in this test)")
        return real_apply(items, now)

    driven.live.apply = apply
    driven.handle(deliveries)
    driven.live.apply = real_apply
    assert _stored(db, city, t0, 20) == 20
    [(topic, detail, _)] = _dead_letters(db, driven.name, "poison")
    assert bad_terminal in topic and detail.startswith("live update (the message is stored): KeyError")
    assert all(d.receipt.settled == [None] for d in deliveries)
    good = _member(city, 10).terminal_id
    assert redis_client.hget(f"gcc:term:{good}", "t") == str((t0 + timedelta(milliseconds=10)).timestamp()).encode()


def test_a_stage_that_raises_costs_only_its_message(driven, city, db):
    t0 = _now() - timedelta(hours=8, minutes=uuid.uuid4().int % 50)
    bad_terminal = _member(city, 1).terminal_id

    class Members(dict):
        def __getitem__(self, key):
            if key == bad_terminal:
                raise AttributeError("member record broken (in this test)")
            return super().__getitem__(key)

    driven.registry.members = Members(driven.registry.members)
    driven.handle(_fixes(city, 5, t0))
    assert _stored(db, city, t0, 5) == 4
    [(topic, detail, _)] = _dead_letters(db, driven.name, "poison")
    assert bad_terminal in topic and detail.startswith("enrich: AttributeError")


# --- NUL in free text, dead letter cap, rate limit ---------------------------------------------------

def test_a_nul_in_free_text_is_a_dead_letter_invalid_text_and_never_reaches_the_tables(stack, city, running, db):
    member = city.members[590]
    p = city.grid_by_code[member.grid_code].boundary.representative_point()
    report_id = f"R-{uuid.uuid4().hex[:10]}"
    body = orjson.dumps({"ts": _now().isoformat(), "report_id": report_id, "category": "exposed_garbage",
                         "severity": 2, "lat": p.y, "lon": p.x, "description": "bags\u0000by the gate"})
    probe = MqttProbe(stack.mosquitto.port, *_login(stack, member.terminal_id))
    try:
        assert probe.publish(terminal_topic(member.terminal_id, "incident"), body) == "Success"
    finally:
        probe.close()
    wait_for(lambda: _dead_letters(db, running.worker.name, "invalid_text"), 10, "the dead letter")
    [(topic, detail, payload)] = _dead_letters(db, running.worker.name, "invalid_text")
    assert detail.startswith("description: must not contain NUL") and bytes(payload) == body
    assert count(db, "select count(*) from incident_reports where report_id = %s", report_id) == 0


def test_a_dead_letter_keeps_the_first_8_kb_of_a_payload_with_its_size_and_full_hash(stack, city, running, db):
    gateway = city.gateways[3]
    payload = b"{" + b"x" * 19_999                           # 20,000 bytes, not JSON
    probe = MqttProbe(stack.mosquitto.port, *_login(stack, gateway.gateway_id))
    try:
        assert probe.publish(gateway_topic(gateway.gateway_id, "reading"), payload) == "Success"
    finally:
        probe.close()

    def row():
        db.rollback()
        with db.cursor() as cur:
            cur.execute("select payload, payload_size, payload_sha256 from dead_letters where topic = %s",
                        (gateway_topic(gateway.gateway_id, "reading"),))
            return cur.fetchone()

    kept, size, sha = wait_for(row, 10, "the dead letter")
    assert DEAD_LETTER_PAYLOAD_MAX == 8192
    assert bytes(kept) == payload[:8192] and size == 20_000
    assert bytes(sha) == hashlib.sha256(payload).digest()


def test_a_device_beyond_its_rate_is_acknowledged_and_dead_lettered_once_a_window_never_silently_dropped(
        stack, city, running, db):
    """30,000 refusals must not be 30,000 dead letters: the first of a window is one, the others are
    acknowledged and counted, and the device's next dead letter says how many."""
    member = city.members[591]
    p = city.grid_by_code[member.grid_code].boundary.representative_point()
    t0 = _now() - timedelta(minutes=30)
    worker, limiter, refusals = running.worker, running.worker.limiter, running.worker.refusals
    worker.limiter, worker.refusals = RateLimiter(rate_per_s=0.001, burst=5), RefusalDigest(window_s=600)
    acked_before = _value(worker, "gcc_ingest_acked_total")
    probe = MqttProbe(stack.mosquitto.port, *_login(stack, member.terminal_id))
    try:
        acks = [probe.publish(terminal_topic(member.terminal_id, "fix"), fix_payload(t0 + timedelta(seconds=i),
                                                                                    p.x, p.y)) for i in range(12)]
        wait_for(lambda: _value(worker, "gcc_ingest_refusals_counted_only_total", reason="rate_limited") == 6, 10,
                 "6 refusals counted only")
        [(_, first, _)] = _dead_letters(db, worker.name, "rate_limited")
        worker.refusals.window_s = 0.0                      # the window is over: the next one tells
        acks.append(probe.publish(terminal_topic(member.terminal_id, "fix"),
                                  fix_payload(t0 + timedelta(seconds=12), p.x, p.y)))
        wait_for(lambda: len(_dead_letters(db, worker.name, "rate_limited")) == 2, 10, "the second dead letter")
    finally:
        probe.close()
        worker.limiter, worker.refusals = limiter, refusals
    assert acks == ["Success"] * 13
    assert count(db, "select count(*) from positions where terminal_id = %s and time >= %s",
                 member.terminal_id, t0) == 5
    assert "6 more since" not in first
    assert any("(6 more since " in detail for _, detail, _ in _dead_letters(db, worker.name, "rate_limited"))
    assert _value(worker, "gcc_ingest_dead_letters_total", reason="rate_limited") == 2
    wait_for(lambda: _value(worker, "gcc_ingest_acked_total") - acked_before >= 13, 5, "every message acknowledged")


# --- a live state that keeps failing is seen by /healthz ---------------------------------------------------

def test_healthz_says_when_redis_is_full_and_the_live_updates_are_not_retried(driven, city, redis_client):
    try:
        original = redis_client.config_get("maxmemory")["maxmemory"]
    except redis.ResponseError:
        pytest.skip("CONFIG is not allowed on this Redis")
    redis_client.config_set("maxmemory", 1)                  # every write now answers OOM
    try:
        driven.handle(_fixes(city, 3, _now() - timedelta(seconds=20)))
    finally:
        redis_client.config_set("maxmemory", original)
    _, detail = driven.health()
    assert detail["live"] == "out of memory" and "Redis is out of memory" in detail["reason"]
    assert _value(driven, "gcc_ingest_live_errors_total") == 1            # tried once, not three times
    driven.handle(_fixes(city, 3, _now() - timedelta(seconds=10)))
    assert driven.health()[1]["live"] == "ok" and "Redis" not in driven.health()[1].get("reason", "")


def test_healthz_turns_unhealthy_when_every_live_update_keeps_failing(driven, city):
    driven.config.live_unhealthy_after_s = 0.5
    real_apply = driven.live.apply

    def apply(items, now=None):
        raise redis.ConnectionError("Redis is away (in this test)")

    driven.live.apply = apply
    try:
        driven.handle(_fixes(city, 2, _now() - timedelta(seconds=20)))     # 3 tries, 1.2 s of pauses
    finally:
        driven.live.apply = real_apply
    _, detail = driven.health()
    assert detail["live"] == "failing" and "every live update has failed for" in detail["reason"]
    driven.handle(_fixes(city, 2, _now() - timedelta(seconds=10)))
    assert driven.health()[1]["live"] == "ok"


# --- an exception that escapes the chain -------------------------------------------------------------------

def test_a_batch_abandoned_by_an_escaped_exception_comes_again_after_a_reconnect_and_is_stored(stack, city, db):
    member = city.members[594]
    p = city.grid_by_code[member.grid_code].boundary.representative_point()
    tw = ThreadWorker(stack, index=102, share_group=f"t{uuid.uuid4().hex[:8]}")
    worker, real_chain, calls = tw.worker, tw.worker._chain, []

    def chain(deliveries, doomed):
        calls.append(len(deliveries))
        if len(calls) == 1:
            raise RuntimeError("a bug outside the contained parts (in this test)")
        return real_chain(deliveries, doomed)

    worker._chain = chain
    t = _now() - timedelta(seconds=15)
    with tw:
        probe = MqttProbe(stack.mosquitto.port, *_login(stack, member.terminal_id))
        try:
            assert probe.publish(terminal_topic(member.terminal_id, "fix"), fix_payload(t, p.x, p.y)) == "Success"
        finally:
            probe.close()
        # the module's `running` worker (its own share group) stores the fix too: what counts is that
        # this worker is sent it again after its reconnect and handles it (stored, or skipped as stored)
        wait_for(lambda: _value(worker, "gcc_ingest_stored_rows_total", table="positions")
                 + _value(worker, "gcc_ingest_duplicates_total") == 1, 20, "the redelivered fix handled by this worker")
        assert len(calls) == 2 and worker.source.reconnects == 1
        assert _value(worker, "gcc_ingest_abandoned_batches_total") == 1
        assert _value(worker, "gcc_ingest_redeliveries_total") == 1          # the broker sent it again (DUP)
        assert count(db, "select count(*) from positions where terminal_id = %s and time = %s",
                     member.terminal_id, t) == 1
        wait_for(lambda: worker.health()[0], 10, "healthy again after the commit")


def _login(stack, username: str) -> tuple[str, str]:
    account = stack.account(username)
    return account.username, account.password


# --- QoS 0 is bounded at the inbox; QoS 1 never is ----------------------------------------------------

def test_qos0_is_shed_when_the_inbox_is_full_and_qos1_never_is(stack, city):
    member = city.members[592]
    p = city.grid_by_code[member.grid_code].boundary.representative_point()
    tw = ThreadWorker(stack, index=99, share_group=f"t{uuid.uuid4().hex[:8]}")
    source = tw.worker.source                # only the source runs: nothing takes from the inbox
    source.qos0_inbox_limit = 10
    confirmed = subscribed(source)
    source.start()
    try:
        assert source.connected.wait(10) and confirmed.wait(10)
        probe = MqttProbe(stack.mosquitto.port, *_login(stack, member.terminal_id))
        try:
            t0 = _now() - timedelta(minutes=20)
            for i in range(60):
                qos = 0 if i < 40 else 1
                probe.publish(terminal_topic(member.terminal_id, "fix"), fix_payload(t0 + timedelta(seconds=i),
                                                                                     p.x, p.y), qos=qos)
        finally:
            probe.close()
        wait_for(lambda: sum(d.inbound.qos == 1 for d in list(source.inbox.queue)) == 20, 10, "all 20 QoS 1")
        kept = sum(d.inbound.qos == 0 for d in list(source.inbox.queue))
        assert kept == 11                                     # up to the limit, then shed
        assert source.shed == 40 - kept
        assert _value(tw.worker, "gcc_ingest_qos0_shed_total") == 40 - kept
    finally:
        source.stop(end_session=True)


# --- a worker that cannot commit says so --------------------------------------------------------------

def test_healthz_turns_unhealthy_when_messages_wait_without_a_commit_and_recovers(stack, settings, city, db):
    member = city.members[593]
    p = city.grid_by_code[member.grid_code].boundary.representative_point()
    tw = ThreadWorker(stack, index=100, share_group=f"t{uuid.uuid4().hex[:8]}")
    worker = tw.worker
    worker.config.stall_after_s = 1.0
    worker.store = Store(f"host=127.0.0.1 port={free_port()} dbname=x user=x password=x")   # nobody there
    with tw:
        assert worker.health()[0]
        t = _now() - timedelta(seconds=5)
        probe = MqttProbe(stack.mosquitto.port, *_login(stack, member.terminal_id))
        try:
            assert probe.publish(terminal_topic(member.terminal_id, "fix"), fix_payload(t, p.x, p.y)) == "Success"
        finally:
            probe.close()
        ok, detail = wait_for(lambda: (h := worker.health()) and not h[0] and h, 10, "the worker to say it stalls")
        assert detail["broker"] == "up" and detail["pending"] >= 1
        assert "no commit for" in detail["reason"]
        assert _value(worker, "gcc_ingest_seconds_since_commit") >= 1.0
        worker.store = Store(settings.pg_dsn)                    # the database is back
        wait_for(lambda: worker.health()[0], 15, "the worker to be healthy again")
        assert count(db, "select count(*) from positions where terminal_id = %s and time = %s",
                     member.terminal_id, t) == 1


def test_healthz_is_unhealthy_while_the_broker_link_is_down(stack, city):
    tw = ThreadWorker(stack, index=101, share_group=f"t{uuid.uuid4().hex[:8]}")
    ok, detail = tw.worker.health()                          # never connected
    assert not ok and detail["broker"] == "down" and "broker" in detail["reason"]


# --- retention for every hypertable ----------------------------------------------------------------------

def test_every_hypertable_has_a_retention_setting(settings, db):
    with db.cursor() as cur:
        cur.execute("select hypertable_name from timescaledb_information.hypertables")
        tables = {r[0] for r in cur.fetchall()}
    assert tables == set(timescale.retention_from_settings(settings))


def test_a_gateway_status_chunk_older_than_its_retention_is_dropped_and_recent_data_kept(settings, db):
    now = datetime.now(timezone.utc)
    keep = timescale.retention_from_settings(settings)["gateway_status"]
    gateway = f"GW-RET-{uuid.uuid4().hex[:6]}"
    with db, db.cursor() as cur:
        cur.execute("insert into gateway_status (time, gateway_id, state) values (%s, %s, 'online'), "
                    "(%s, %s, 'offline')", (now - keep - timedelta(days=60), gateway, now - timedelta(days=1), gateway))
    dropped = timescale.RetentionJob(settings.pg_dsn, timescale.retention_from_settings(settings)).run_once()
    assert dropped["gateway_status"] >= 1
    db.rollback()
    with db.cursor() as cur:
        cur.execute("select state from gateway_status where gateway_id = %s", (gateway,))
        assert [r[0] for r in cur.fetchall()] == ["offline"]
