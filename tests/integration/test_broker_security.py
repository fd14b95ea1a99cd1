"""The broker admits only known accounts, and each device only under its own topics."""
from __future__ import annotations

import subprocess

import pytest

from stack.mosquitto import BrokerAccount, acl_file_text, mqtt_connect_reason
from telemetry.topics import AccountKind, terminal_topic

from .mqtt_helpers import publish_once


@pytest.fixture(scope="module")
def terminals(stack):
    accounts = [BrokerAccount.generate(f"T-ACL-{i}", AccountKind.TERMINAL) for i in (1, 2)]
    stack.add_broker_accounts(accounts)
    return accounts


def test_anonymous_connection_is_refused(stack):
    assert mqtt_connect_reason("127.0.0.1", stack.mosquitto.port, None) == "Not authorized"


def test_wrong_password_is_refused(stack, terminals):
    wrong = BrokerAccount(terminals[0].username, "not-the-password", AccountKind.TERMINAL)
    assert mqtt_connect_reason("127.0.0.1", stack.mosquitto.port, wrong) in (
        "Not authorized", "Bad user name or password")


def test_terminal_may_publish_a_fix_under_its_own_topic(stack, terminals, ingest_listener):
    t1 = terminals[0]
    assert publish_once(stack.mosquitto.port, t1, terminal_topic(t1.username, "fix"), b'{"own": true}') == "Success"
    got = ingest_listener.received(timeout=5)
    assert [m.topic for m in got] == [terminal_topic(t1.username, "fix")]


def test_terminal_cannot_publish_under_another_terminals_topic(stack, terminals, ingest_listener):
    t1, t2 = terminals
    reason = publish_once(stack.mosquitto.port, t1, terminal_topic(t2.username, "fix"), b'{"spoofed": true}')
    assert reason == "Not authorized"
    assert ingest_listener.received(timeout=1.5) == []


def test_terminal_cannot_send_itself_a_task(stack, terminals, ingest_listener):
    """Tasks come from the dispatcher only: the task topic is read-only for the terminal."""
    t1 = terminals[0]
    assert publish_once(stack.mosquitto.port, t1, terminal_topic(t1.username, "task"), b"{}") == "Not authorized"


def test_mosquitto_pub_command_line_client_is_held_to_the_same_acl(stack, terminals, ingest_listener):
    t1, t2 = terminals
    base = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(stack.mosquitto.port), "-V", "mqttv5",
            "-q", "1", "-u", t1.username, "-P", t1.password, "-m", "{}"]
    ok = subprocess.run(base + ["-t", terminal_topic(t1.username, "status")], capture_output=True,
                        text=True, timeout=20)
    assert ok.returncode == 0, ok.stderr
    subprocess.run(base + ["-t", terminal_topic(t2.username, "status")], capture_output=True,
                   text=True, timeout=20)
    got = ingest_listener.received(timeout=3)
    assert [m.topic for m in got] == [terminal_topic(t1.username, "status")]


def test_acl_file_gives_each_terminal_only_its_own_topics():
    text = acl_file_text([BrokerAccount("T9", "x", AccountKind.TERMINAL)])
    lines = text.strip().splitlines()
    assert lines[0] == "user T9"
    assert all("/terminal/T9/" in line for line in lines[1:])
    assert "topic read gcc/v1/terminal/T9/task" in lines
    assert not any("#" in line or "+" in line for line in lines)


@pytest.mark.parametrize("bad_id", ["", "a/b", "a+b", "#", "x y"])
def test_device_ids_that_would_escape_their_topic_are_rejected(bad_id):
    with pytest.raises(ValueError):
        acl_file_text([BrokerAccount(bad_id, "x", AccountKind.TERMINAL)])
