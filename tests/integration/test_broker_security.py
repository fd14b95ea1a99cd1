"""The broker admits only known accounts; each device publishes and subscribes only under its own
topics, connects only with its own client id, and cannot join the ingest's share group: the
attacks a stolen handset's password allowed (issue 9), tried against the real broker."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from config.settings import REPO_ROOT
from registry.dynsec import BrokerAccount
from stack.mosquitto import DYNSEC_FILE, MosquittoServer, mqtt_connect_reason
from stack.process import RunAs
from stack.stack import free_port
from telemetry.topics import AccountKind, gateway_topic, terminal_topic

from ..support import wait_for
from .ingest_helpers import FixPublisher, ThreadWorker, count, fix_payload
from .mqtt_helpers import MqttProbe, publish_once

REFUSED = "Not authorized"


@pytest.fixture(scope="module")
def terminals(stack):
    accounts = [BrokerAccount.generate(f"T-ACL-{uuid.uuid4().hex[:6]}", AccountKind.TERMINAL) for _ in range(2)]
    stack.add_broker_accounts(accounts)
    return accounts


def test_anonymous_connection_is_refused(stack):
    assert mqtt_connect_reason("127.0.0.1", stack.mosquitto.port, None) == REFUSED


def test_wrong_password_is_refused(stack, terminals):
    wrong = BrokerAccount(terminals[0].username, "not-the-password", AccountKind.TERMINAL)
    assert mqtt_connect_reason("127.0.0.1", stack.mosquitto.port, wrong) in (REFUSED, "Bad user name or password")


def test_terminal_may_publish_a_fix_under_its_own_topic(stack, terminals, ingest_listener):
    t1 = terminals[0]
    assert publish_once(stack.mosquitto.port, t1, terminal_topic(t1.username, "fix"), b'{"own": true}') == "Success"
    got = ingest_listener.received(timeout=5)
    assert [m.topic for m in got] == [terminal_topic(t1.username, "fix")]


def test_terminal_cannot_publish_under_another_terminals_topic(stack, terminals, ingest_listener):
    t1, t2 = terminals
    assert publish_once(stack.mosquitto.port, t1, terminal_topic(t2.username, "fix"), b'{"spoofed": true}') == REFUSED
    # then its own fix: the broker answered the refusal first, so anything it had let through would come before
    assert publish_once(stack.mosquitto.port, t1, terminal_topic(t1.username, "fix"), b'{"own": true}') == "Success"
    assert [m.topic for m in ingest_listener.received(timeout=5)] == [terminal_topic(t1.username, "fix")]


def test_terminal_cannot_send_itself_a_task(stack, terminals):
    """Tasks come from the dispatcher only: the task topic is subscribe-only for the terminal."""
    t1 = terminals[0]
    assert publish_once(stack.mosquitto.port, t1, terminal_topic(t1.username, "task"), b"{}") == REFUSED


def test_a_device_may_subscribe_to_its_own_downlink_and_nothing_else(stack, terminals, city):
    t1, t2 = terminals
    gateway = city.gateways[0]
    probe = MqttProbe(stack.mosquitto.port, t1.username, t1.password)
    try:
        assert probe.subscribe(terminal_topic(t1.username, "task")) == "Granted QoS 1"
        for topic in ("$share/ingest/gcc/v1/terminal/+/fix", "$share/ingest/#", "#", "gcc/v1/#",
                      "gcc/v1/terminal/+/fix", terminal_topic(t2.username, "task"), terminal_topic(t1.username, "fix"),
                      gateway_topic(gateway.gateway_id, "cmd"), "$SYS/#", "$CONTROL/dynamic-security/v1/response",
                      f"$share/x/{terminal_topic(t1.username, 'task')}"):
            assert probe.subscribe(topic) == REFUSED, topic
    finally:
        probe.close()


def test_a_device_trying_to_join_the_share_group_takes_nothing_from_it(stack, settings, city, db, terminals):
    """The reproduced attack: a terminal subscribed to the ingest's shared subscription got its
    round-robin share of every fix, which the broker then dropped. Now its SUBSCRIBE is refused and
    every one of 1,000 fixes published meanwhile is stored."""
    group = f"t{uuid.uuid4().hex[:8]}"
    thief_account = terminals[1]
    member = city.members[210]
    point = city.grid_by_code[member.grid_code].boundary.representative_point()
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    with ThreadWorker(stack, index=97, share_group=group):
        thief = MqttProbe(stack.mosquitto.port, thief_account.username, thief_account.password,
                          clean_start=False, session_expiry=3600)
        try:
            assert thief.subscribe(f"$share/{group}/gcc/v1/terminal/+/fix") == REFUSED
            publisher = FixPublisher(stack.mosquitto.port, stack.account(member.terminal_id), point.x, point.y, start)
            sender = threading.Thread(target=publisher.publish, args=(1000,))
            sender.start()
            sender.join(120)
            publisher.close()
            assert len(publisher.acked) == 1000
            wait_for(lambda: count(db, "select count(*) from positions where terminal_id = %s and time >= %s "
                                       "and time < %s", member.terminal_id, start, start + timedelta(seconds=1000))
                     == 1000, 60, "all 1,000 fixes stored")
            assert thief.messages.empty()
        finally:
            thief.close()


def test_no_account_can_take_over_a_workers_session(stack, city, terminals):
    """The reproduced attack: a terminal connecting with client id ingest-N and clean_start=false
    was handed the worker's persistent session. The broker binds every account, of every kind (the
    health check's one too, which may do nothing else), to its own client id."""
    thieves = [terminals[0], stack.account(city.gateways[0].gateway_id), stack.account("broker-health"),
               stack.account("dispatch"), stack.account("cases"), stack.account("broker-admin"),
               stack.account("ingest-2"), stack.account("handheld-bridge"),
               stack.service_account(AccountKind.OSMAND, "osmand-thief")]
    assert {t.kind for t in thieves} == set(AccountKind) - {AccountKind.OWNTRACKS}
    with ThreadWorker(stack, index=98, share_group=f"t{uuid.uuid4().hex[:8]}") as tw:
        epoch_before = tw.worker.source.session_epoch  # moves on every connect and disconnect
        reasons = {t.username: mqtt_connect_reason("127.0.0.1", stack.mosquitto.port, t, client_id="ingest-98")
                   for t in thieves}
        assert reasons == {t.username: REFUSED for t in thieves}
        # a message through the worker's connection after the attempts: a takeover would have cut the
        # worker off before the thief's CONNACK (and taken what comes for the session from then on)
        received, member = tw.worker.source.received, city.members[211]
        point = city.grid_by_code[member.grid_code].boundary.representative_point()
        assert publish_once(stack.mosquitto.port, stack.account(member.terminal_id), terminal_topic(
            member.terminal_id, "fix"), fix_payload(datetime.now(timezone.utc), point.x, point.y)) == "Success"
        wait_for(lambda: tw.worker.source.received > received, 10, "a fix through the worker's own connection")
        assert tw.worker.source.connected.is_set()
        assert tw.worker.source.session_epoch == epoch_before   # the worker was never kicked off


def test_an_account_connects_only_with_its_own_client_id(stack, terminals):
    t1 = terminals[0]
    assert mqtt_connect_reason("127.0.0.1", stack.mosquitto.port, t1) == "Success"
    assert mqtt_connect_reason("127.0.0.1", stack.mosquitto.port, t1, client_id=f"{t1.username}-2") == REFUSED


def test_an_account_added_while_the_broker_runs_works_at_once(stack):
    late = BrokerAccount.generate(f"T-LATE-{uuid.uuid4().hex[:6]}", AccountKind.TERMINAL)
    stack.add_broker_accounts([late])
    reason = publish_once(stack.mosquitto.port, late, terminal_topic(late.username, "fix"), b"{}")
    assert reason in ("Success", "No matching subscribers")   # taken, not refused


def test_a_revoked_account_is_dropped_at_once_and_refused_from_then_on(stack):
    lost = BrokerAccount.generate(f"T-LOST-{uuid.uuid4().hex[:6]}", AccountKind.TERMINAL)
    stack.add_broker_accounts([lost])
    handset = MqttProbe(stack.mosquitto.port, lost.username, lost.password)
    try:
        assert handset.connect_reason == "Success"
        # the operator's command, from another process's view of the same data dir
        subprocess.run([sys.executable, "-m", "stack", "disable-account", lost.username,
                        "--data-dir", str(stack.data_dir)], check=True, cwd=REPO_ROOT, capture_output=True)
        wait_for(lambda: not handset.client.is_connected(), 10, "the broker to drop the revoked handset")
    finally:
        handset.close()
    assert mqtt_connect_reason("127.0.0.1", stack.mosquitto.port, lost) == REFUSED
    saved = json.loads((stack.mosquitto.data_dir / DYNSEC_FILE).read_text())      # what a restart loads
    assert next(c for c in saved["clients"] if c["username"] == lost.username)["disabled"] is True
    recorded = json.loads(stack.accounts_path.read_text())                          # what the next start writes
    assert next(a for a in recorded if a["username"] == lost.username)["disabled"] is True

    stack.set_account_disabled(lost.username, False)
    assert mqtt_connect_reason("127.0.0.1", stack.mosquitto.port, lost) == "Success"


def test_a_broker_started_from_a_file_with_a_revoked_account_refuses_it():
    """The plugin honours "disabled" when it loads its file: a revocation outlives a restart."""
    active, lost = (BrokerAccount.generate(f"T-{uuid.uuid4().hex[:6]}", AccountKind.TERMINAL) for _ in range(2))
    health = BrokerAccount.generate("broker-health", AccountKind.HEALTH)
    run_as = RunAs.for_service("mosquitto")
    base = Path(tempfile.mkdtemp(prefix="gridcc-test-", dir="/var/tmp"))
    base.chmod(0o711)
    broker_dir = base / "mosquitto"
    broker_dir.mkdir(mode=0o700)
    if run_as is not None:
        run_as.own_dir(broker_dir)
    broker = MosquittoServer(broker_dir, free_port(), run_as, base, base, health_account=health)
    broker.write_accounts([health, active, replace(lost, disabled=True)])
    broker.start()
    try:
        assert mqtt_connect_reason("127.0.0.1", broker.port, active) == "Success"
        assert mqtt_connect_reason("127.0.0.1", broker.port, lost) == REFUSED
    finally:
        broker.stop()
        shutil.rmtree(base)


def test_a_phone_is_refused_topics_the_app_never_uses_and_oversized_packets(stack):
    phone = BrokerAccount.generate(f"ot-{uuid.uuid4().hex[:6]}", AccountKind.OWNTRACKS)
    stack.add_broker_accounts([phone])
    probe = MqttProbe(stack.mosquitto.port, phone.username, phone.password)
    try:
        assert probe.publish(f"owntracks/{phone.username}/phone", b"{}") in ("Success", "No matching subscribers")
        assert probe.publish(f"owntracks/{phone.username}/phone/event", b"{}") in ("Success",
                                                                                   "No matching subscribers")
        assert probe.publish(f"owntracks/{phone.username}/phone/x/y/z", b"{}") == REFUSED
        assert probe.publish(f"owntracks/{phone.username}/phone/nonsense", b"{}") == REFUSED
        probe.client.publish(f"owntracks/{phone.username}/phone", b"x" * 200_000, qos=1)   # over 128 KiB
        wait_for(lambda: not probe.client.is_connected(), 10, "the broker to cut off the oversized packet")
    finally:
        probe.close()
