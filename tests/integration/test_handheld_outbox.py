"""The members' phones' downlink against the real stack: the cases engine's notices and
announcements and a dispatcher's task reach, through the broker and the handheld bridge (its own
account, a persistent QoS 1 session acknowledged after the commit), the outbox of exactly the
phones they are for, once each even when sent twice; a bridge killed between receipt and commit
loses nothing; a phone acknowledges only its own items; its stream brings what waits, then each
new item as it is written, and ends when the phone is retired or the client goes."""
from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import psycopg2
import pytest

from cases import store
from cases.intake import INTAKE
from cases.limits import Urgency
from cases.machine import open_case
from cases.model import Source
from cases.notifier import Notifier
from config.settings import REPO_ROOT
from core.orgcodes import Level, ancestor
from core.roles import Role
from handheld.bridge import APPLICATION_NAME, SESSION_EXPIRY_S, HandheldBridge
from handheld.caller import Caller
from handheld.outbox import KEEPALIVE, Outbox
from telemetry.notices import NoticeKind
from telemetry.topics import NOTICE, TASK, AccountKind, org_topic, terminal_topic

from ..support import EndpointRequest, wait_for
from .ingest_helpers import owner_rows
from .mqtt_helpers import MqttProbe

pytestmark = pytest.mark.slow
WAIT_S = 20.0


# --- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cases_settings(stack, city):
    """The cases engine's own role, with the default time limits seeded as the engine seeds them."""
    settings = stack.app_settings("cases")
    conn = psycopg2.connect(settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            store.seed(cur, [2026, 2027], "tests")
    finally:
        conn.close()
    return settings


@pytest.fixture(scope="module")
def notifier(stack, cases_settings):
    """The cases engine's notifier: publishes the notices and announcements written to its outboxes."""
    account = stack.account("cases")
    sender = Notifier(cases_settings.pg_dsn, "127.0.0.1", stack.mosquitto.port, account.username, account.password)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    yield sender
    sender.stop_event.set()
    thread.join(15)


@contextmanager
def running_bridge(stack):
    """The handheld bridge in a thread, as the ingest's database role, subscribed."""
    account = stack.account("handheld-bridge")
    bridge = HandheldBridge(stack.app_settings("ingest").pg_dsn, "127.0.0.1", stack.mosquitto.port,
                            account.username, account.password)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    try:
        assert bridge.subscribed.wait(WAIT_S), "the bridge's subscriptions were not granted"
        yield bridge
    finally:
        bridge.stop_event.set()
        thread.join(15)


@pytest.fixture
def bridge(stack, city):
    with running_bridge(stack) as running:
        yield running


@pytest.fixture(scope="module")
def outbox(stack, city):
    """The outbox's endpoints as the device-facing server runs them (the ingest's role)."""
    box = Outbox(stack.app_settings("ingest").pg_dsn)
    yield box
    box.close()


@pytest.fixture(scope="module")
def places(city):
    """Two members in two grids of one street, and one of another street."""
    by_street: dict[str, list] = {}
    for member in city.members:
        by_street.setdefault(ancestor(member.grid_code, Level.STREET), []).append(member)
    street, members = next((s, ms) for s, ms in sorted(by_street.items()) if len({m.grid_code for m in ms}) >= 2)
    here = members[0]
    beside = next(m for m in members if m.grid_code != here.grid_code)
    away = next(m for s, ms in sorted(by_street.items()) if s != street for m in ms)
    return street, here, beside, away


def enrol_phone(stack, member) -> str:
    """A phone of the member (kind 'handheld'), as the registry enrols it (migration 0028's kind)."""
    device_id = f"hh-test-{secrets.token_hex(4)}"
    owner_rows(stack, "insert into member_devices (device_id, member_id, kind, label) values "
                      "(%s, %s, 'handheld', 'test phone') returning device_id", device_id, member.member_id)
    return device_id


def rows_of(stack, device_id: str) -> list[tuple]:
    return owner_rows(stack, "select kind, key, body from handheld_outbox where device_id = %s order by seq",
                      device_id)


def caller_of(member, device_id: str) -> Caller:
    return Caller(device_id, member.member_id, member.terminal_id, member.grid_code, member.role, member.name)


def _case(stack, cases_settings, member) -> str:
    """An open case in the member's grid, as the intake opens a report's."""
    conn = psycopg2.connect(cases_settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            rules = store.load_rules(cur)
            now = datetime.now(timezone.utc)
            case_id = store.next_case_id(cur, now)
            outcome = open_case(case_id, "exposed_garbage", Urgency.NORMAL, Source.REPORT, member.grid_code,
                                member.grid_code, INTAKE, now, rules, title="Exposed garbage 暴露垃圾", place="Gate 2")
            store.insert(cur, outcome.case, rules)
            store.add_events(cur, outcome.events)
    finally:
        conn.close()
    return case_id


def _notice(stack, case_id: str, member) -> int:
    """A notice of the case to the member's terminal in the engine's outbox (the notifier sends it)."""
    body = {"ts": datetime.now(timezone.utc).isoformat(), "kind": NoticeKind.VERIFY.value, "case_id": case_id,
            "state": "handled", "category": "exposed_garbage", "urgency": "normal", "title": "Exposed garbage",
            "place": "Gate 2", "lat": None, "lon": None, "deadline": None, "reason": None, "level": None}
    [(notice_id,)] = owner_rows(stack, "insert into case_notices (case_id, terminal_id, kind, time, body) values "
                                       "(%s, %s, %s, now(), %s) returning id", case_id, member.terminal_id,
                                NoticeKind.VERIFY.value, orjson.dumps(body).decode())
    return notice_id


def _announce(stack, org_code: str, title: str) -> int:
    now = datetime.now(timezone.utc)
    [(announcement_id,)] = owner_rows(
        stack, "insert into announcements (org_code, org_name, title, body, sent_by, sender, created_at, expires_at, "
               "recipients) values (%s, 'a street', %s, 'Check the drains.', 'tests', 'Tests · Dispatcher', %s, %s, 0) "
               "returning id", org_code, title, now, now + timedelta(days=1))
    return announcement_id


def _sent(stack, table: str, row_id: int) -> bool:
    return bool(owner_rows(stack, f"select 1 from {table} where id = %s and sent_at is not null", row_id))


def _publisher(stack, kind: AccountKind, name: str) -> MqttProbe:
    account = stack.service_account(kind, name)
    return MqttProbe(stack.mosquitto.port, account.username, account.password)


# --- the bridge -------------------------------------------------------------------------------------
def test_a_case_notice_reaches_each_phone_of_its_member_once_even_when_sent_twice(stack, city, cases_settings,
                                                                                  notifier, bridge, places):
    _, here, beside, _ = places
    phones = [enrol_phone(stack, here), enrol_phone(stack, here)]
    other = enrol_phone(stack, beside)
    notice_id = _notice(stack, _case(stack, cases_settings, here), here)
    wait_for(lambda: _sent(stack, "case_notices", notice_id), WAIT_S, "the engine to send the notice")
    wait_for(lambda: all(rows_of(stack, p) for p in phones), WAIT_S, "the notice in both phones' outboxes")
    before = bridge.counts.by_kind.get("notice", 0)
    # the engine sends it again (as after a crash between its PUBACK and marking it sent)
    owner_rows(stack, "update case_notices set sent_at = null where id = %s returning id", notice_id)
    owner_rows(stack, "select pg_notify('case_notice', '')")
    wait_for(lambda: bridge.counts.by_kind.get("notice", 0) > before, WAIT_S,
             "the bridge to commit and acknowledge the notice sent again")
    for phone in phones:
        [(kind, key, body)] = rows_of(stack, phone)
        assert (kind, key, body["notice_id"], body["kind"]) == ("notice", str(notice_id), notice_id, "verify")
    assert rows_of(stack, other) == []


def test_a_task_reaches_the_phone_of_its_terminal_and_no_other(stack, city, bridge, places):
    _, here, beside, _ = places
    phone, other = enrol_phone(stack, here), enrol_phone(stack, beside)
    dispatcher = _publisher(stack, AccountKind.DISPATCH, "dispatch-hh-test")
    try:
        task = {"task_id": f"TASK-{secrets.token_hex(3)}", "lat": 26.08, "lon": 119.3, "category": "exposed_garbage"}
        for _ in range(2):          # a redelivery of the same task
            assert dispatcher.publish(terminal_topic(here.terminal_id, TASK), orjson.dumps(task)) == "Success"
        wait_for(lambda: bridge.counts.by_kind.get("task", 0) >= 2, WAIT_S, "the bridge to write both deliveries")
    finally:
        dispatcher.close()
    assert rows_of(stack, phone) == [("task", task["task_id"], task)]
    assert rows_of(stack, other) == []


def test_an_announcement_to_a_street_reaches_the_phones_of_its_grids_only(stack, city, notifier, bridge, places):
    street, here, beside, away = places
    phones = [enrol_phone(stack, here), enrol_phone(stack, beside)]
    elsewhere = enrol_phone(stack, away)
    announcement_id = _announce(stack, street, "Typhoon warning 台风预警")
    wait_for(lambda: all(rows_of(stack, p) for p in phones), WAIT_S, "the announcement in the street's phones")
    for phone in phones:
        [(kind, key, body)] = rows_of(stack, phone)
        assert (kind, key, body["org_code"], body["title"]) == ("announcement", str(announcement_id), street,
                                                                "Typhoon warning 台风预警")
    wait_for(lambda: _sent(stack, "announcements", announcement_id), WAIT_S, "the engine to mark it sent")
    assert rows_of(stack, elsewhere) == []


def test_a_retired_phone_gets_nothing(stack, city, bridge, places):
    _, here, _, _ = places
    live, retired = enrol_phone(stack, here), enrol_phone(stack, here)
    owner_rows(stack, "update member_devices set retired_at = now() where device_id = %s returning 1", retired)
    dispatcher = _publisher(stack, AccountKind.DISPATCH, "dispatch-hh-test")
    try:
        assert dispatcher.publish(terminal_topic(here.terminal_id, TASK), b'{"task_id": "T-retired"}') == "Success"
    finally:
        dispatcher.close()
    wait_for(lambda: rows_of(stack, live), WAIT_S, "the task in the live phone's outbox")
    assert rows_of(stack, retired) == []


def test_a_malformed_downlink_is_counted_acknowledged_and_the_next_one_written(stack, city, bridge, places):
    _, here, _, _ = places
    phone = enrol_phone(stack, here)
    dispatcher = _publisher(stack, AccountKind.DISPATCH, "dispatch-hh-test")
    try:
        for bad in (b"not json", b"[1, 2]", b'{"no_task_id": 1}', b'{"task_id": "has space"}'):
            assert dispatcher.publish(terminal_topic(here.terminal_id, TASK), bad) == "Success"
        assert dispatcher.publish(terminal_topic(here.terminal_id, TASK), b'{"task_id": "T-after"}') == "Success"
    finally:
        dispatcher.close()
    wait_for(lambda: rows_of(stack, phone), WAIT_S, "the good task after the bad ones")
    assert bridge.counts.malformed >= 4
    assert [key for _, key, _ in rows_of(stack, phone)] == ["T-after"]


def test_the_bridge_killed_between_receipt_and_commit_loses_nothing(stack, city, places, tmp_path):
    """A real process, killed (SIGKILL) while its transaction waits on a lock the test holds: the
    message was received and never acknowledged, so the broker delivers it to the next bridge."""
    _, here, _, _ = places
    phone = enrol_phone(stack, here)
    log_path = tmp_path / "bridge.log"
    env = {**os.environ, **stack.app_env("ingest", stack.account("handheld-bridge")), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "handheld.bridge"], cwd=Path(REPO_ROOT), env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    locker = psycopg2.connect(stack.settings().pg_dsn)
    try:
        wait_for(lambda: "subscribed to" in log_path.read_text(), WAIT_S, "the bridge process to subscribe",
                 explain=lambda: log_path.read_text()[-2000:])
        with locker.cursor() as cur:
            cur.execute("lock table handheld_outbox in exclusive mode")     # inserts wait until it ends
        dispatcher = _publisher(stack, AccountKind.DISPATCH, "dispatch-hh-test")
        try:
            assert dispatcher.publish(terminal_topic(here.terminal_id, TASK), b'{"task_id": "T-killed"}') == "Success"
        finally:
            dispatcher.close()
        wait_for(lambda: owner_rows(stack, "select 1 from pg_stat_activity where application_name = %s and "
                                           "wait_event_type = 'Lock'", APPLICATION_NAME),
                 WAIT_S, "the bridge's insert to wait on the lock")
        process.send_signal(signal.SIGKILL)
        process.wait(WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT_S)
        locker.rollback()
        locker.close()
    assert rows_of(stack, phone) == []
    with running_bridge(stack):
        wait_for(lambda: rows_of(stack, phone), WAIT_S, "the broker to deliver the task again to the next bridge")
    assert [key for _, key, _ in rows_of(stack, phone)] == ["T-killed"]


def test_the_bridge_account_may_publish_nothing(stack, city):
    account = stack.account("handheld-bridge")
    # its own session kept as it is (clean start off, the bridge's session expiry)
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password, clean_start=False,
                      session_expiry=SESSION_EXPIRY_S)
    try:
        assert probe.publish(terminal_topic("T-anyone", NOTICE), b"{}") == "Not authorized"
        assert probe.publish(org_topic("350102"), b"{}") == "Not authorized"
    finally:
        probe.close()


# --- the outbox's endpoints -------------------------------------------------------------------------
def _item_rows(stack, phone: str, n: int, kind: str = "task") -> list[int]:
    return [seq for (seq,) in owner_rows(
        stack, "insert into handheld_outbox (device_id, kind, key, body) select %s, %s, 'K' || g, "
               "jsonb_build_object('task_id', 'K' || g) from generate_series(1, %s) g returning seq",
        phone, kind, n)]


def test_ack_acknowledges_only_the_callers_own_items(stack, city, outbox, places):
    _, here, beside, _ = places
    mine, theirs = enrol_phone(stack, here), enrol_phone(stack, beside)
    my_seqs, their_seqs = _item_rows(stack, mine, 3), _item_rows(stack, theirs, 2)
    assert [i.seq for i in outbox.pending(mine)] == my_seqs
    assert outbox.ack(mine, [my_seqs[0], *their_seqs]) == 1
    assert outbox.ack(mine, [my_seqs[0]]) == 0                       # again: nothing new
    assert [i.seq for i in outbox.pending(mine)] == my_seqs[1:]
    assert [i.seq for i in outbox.pending(theirs)] == their_seqs    # untouched
    assert [i.seq for i in outbox.pending(mine, after_seq=my_seqs[1])] == my_seqs[2:]


def test_the_endpoints_answer_and_refuse_bad_input(stack, city, outbox, places):
    _, here, beside, _ = places
    mine, theirs = enrol_phone(stack, here), enrol_phone(stack, beside)
    seqs, their_seqs = _item_rows(stack, mine, 2), _item_rows(stack, theirs, 1)
    me = caller_of(here, mine)
    reply = outbox.outbox(me, EndpointRequest("GET", f"/handheld/api/v1/outbox?after={seqs[0]}"))
    assert reply.status == 200 and [i["seq"] for i in orjson.loads(reply.body)["items"]] == seqs[1:]
    assert outbox.outbox(me, EndpointRequest("GET", "/handheld/api/v1/outbox?after=-1")).refused == "bad_after"
    ack = outbox.acknowledge(me, EndpointRequest("POST", "/handheld/api/v1/outbox/ack",
                                                 raw=orjson.dumps({"seqs": [*seqs, *their_seqs]})))
    assert (ack.status, orjson.loads(ack.body)) == (200, {"acked": 2})
    assert [i.seq for i in outbox.pending(theirs)] == their_seqs
    for bad, reason in ((b"nope", "invalid_json"), (b'{"seqs": []}', "bad_seqs"), (b'{"seqs": ["1"]}', "bad_seqs"),
                        (b'{"seqs": [1.5]}', "bad_seqs"), (b'{"seqs": [true]}', "bad_seqs"), (b"[1]", "bad_seqs")):
        refused = outbox.acknowledge(me, EndpointRequest("POST", "/handheld/api/v1/outbox/ack", raw=bad))
        assert (refused.status, refused.refused) == (400, reason), bad
    paths = {(r.method, r.path) for r in outbox.routes(lambda respond: respond)}
    assert paths == {("GET", "/handheld/api/v1/outbox"), ("GET", "/handheld/api/v1/stream"),
                     ("POST", "/handheld/api/v1/outbox/ack")}


async def _next(stream, timeout: float = WAIT_S) -> bytes:
    return await asyncio.wait_for(anext(stream), timeout)


def _events(chunk: bytes) -> list[dict]:
    """The items of the server-sent events in a chunk (comments skipped)."""
    out = []
    for event in chunk.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in event.splitlines() if line and not line.startswith(":"))
        if lines:
            item = orjson.loads(lines["data"])
            assert (lines["id"], lines["event"]) == (str(item["seq"]), item["kind"])
            out.append(item)
    return out


def test_the_stream_brings_what_waits_then_a_new_item_as_it_is_written(stack, city, notifier, bridge, outbox, places):
    _, here, _, _ = places
    phone = enrol_phone(stack, here)
    waiting = _item_rows(stack, phone, 2)
    reply = outbox.stream(caller_of(here, phone))
    assert reply.status == 200 and reply.content_type.startswith("text/event-stream")

    async def scenario() -> tuple[list[dict], list[dict], int]:
        first = _events(await _next(reply.stream))
        assert outbox.hub.listening.wait(WAIT_S)
        announcement_id = await asyncio.get_running_loop().run_in_executor(
            None, _announce, stack, ancestor(here.grid_code, Level.COMMUNITY), "Water off 停水")
        new = []
        while not new:          # keep-alive comments may come between
            new = _events(await _next(reply.stream))
        await reply.stream.aclose()         # the client goes
        return first, new, announcement_id

    first, new, announcement_id = asyncio.run(scenario())
    assert [i["seq"] for i in first] == waiting
    assert [(i["kind"], i["body"]["announcement_id"]) for i in new] == [("announcement", announcement_id)]
    assert outbox.hub.open_streams == 0


def test_a_retired_phones_stream_ends(stack, city, outbox, places):
    _, here, _, _ = places
    phone = enrol_phone(stack, here)
    _item_rows(stack, phone, 1)
    reply = outbox.stream(caller_of(here, phone))

    async def scenario() -> bool:
        assert _events(await _next(reply.stream))
        assert outbox.hub.listening.wait(WAIT_S)
        await asyncio.get_running_loop().run_in_executor(
            None, owner_rows, stack, "update member_devices set retired_at = now() where device_id = %s returning 1",
            phone)
        try:
            while True:
                assert await _next(reply.stream) == KEEPALIVE
        except StopAsyncIteration:
            return True

    assert asyncio.run(scenario())
    assert outbox.hub.open_streams == 0


def test_a_quiet_stream_gets_keep_alive_comments(stack, city, places):
    _, here, _, _ = places
    phone = enrol_phone(stack, here)
    box = Outbox(stack.app_settings("ingest").pg_dsn, keepalive_s=0.2)
    try:
        reply = box.stream(caller_of(here, phone))

        async def scenario() -> bytes:
            chunk = await _next(reply.stream)
            await reply.stream.aclose()
            return chunk

        assert asyncio.run(scenario()) == KEEPALIVE
    finally:
        box.close()


def test_the_stream_of_a_retired_phone_does_not_open(stack, city, outbox, places):
    member = next(m for m in city.members if m.role is Role.GRID_COORDINATOR)
    phone = enrol_phone(stack, member)
    owner_rows(stack, "update member_devices set retired_at = now() where device_id = %s returning 1", phone)
    reply = outbox.stream(caller_of(member, phone))

    async def scenario() -> list[bytes]:
        return [chunk async for chunk in reply.stream]

    assert asyncio.run(scenario()) == []
