"""Broker roles after an upgrade that adds a message kind: an account the registry created at run
time keeps the role the broker saved for it, so until its role is derived again the broker refuses
the new kind's topic. `python -m registry.devices sync-roles` (run by the stack at every start)
brings every account's role in line; the stack's own start derives the roles it keeps from its
file as well (`merged_config`). The example kind is `alarm_check` (gcc/v1/terminal/<id>/alarm/check)."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from config.settings import REPO_ROOT
from registry.broker import BrokerAdmin
from registry.devices import sync_roles
from registry.dynsec import BrokerAccount, DynsecControl, acl_set, acls, dynsec_config, merged_config
from registry.store import Actor, DeviceRegistry
from simulator import payloads
from telemetry.topics import AccountKind, terminal_topic

from .. import support
from .ingest_helpers import ThreadWorker, owner_rows
from .mqtt_helpers import MqttProbe

GRID = "350102001001001"
ALARM_CHECK = "alarm/check"


def before_the_kind(account: BrokerAccount, leaf: str = ALARM_CHECK) -> list[dict]:
    """The account's ACLs as a role saved before the kind publishing on `leaf` existed."""
    return [a for a in acls(account.rules) if a["topic"] != terminal_topic(account.username, leaf)]


# --- the stack's start: roles it keeps from the broker's file are derived anew --------------------
def _kept_role(saved_role: dict, username: str, kind: AccountKind) -> dict:
    ours = dynsec_config([BrokerAccount("T-ours", "pw", AccountKind.TERMINAL, org=GRID)])
    saved = dynsec_config([BrokerAccount("T-ours", "pw", AccountKind.TERMINAL, org=GRID),
                           BrokerAccount(username, "pw", kind)])
    saved["roles"] = [r for r in saved["roles"] if r["rolename"] != saved_role["rolename"]] + [saved_role]
    merged = merged_config(ours, saved)
    return next(r for r in merged["roles"] if r["rolename"] == saved_role["rolename"])


def test_a_restart_derives_a_kept_terminal_s_role_anew_with_its_grid_read_back_from_the_role():
    terminal = BrokerAccount("T-run-time", "", AccountKind.TERMINAL, org=GRID)
    role = _kept_role({"rolename": terminal.rolename, "acls": before_the_kind(terminal)}, terminal.username,
                      AccountKind.TERMINAL)
    assert acl_set(role["acls"]) == acl_set(acls(terminal.rules))
    assert {"acltype": "publishClientSend", "topic": terminal_topic("T-run-time", ALARM_CHECK), "allow": True} \
        in role["acls"]


def test_a_restart_derives_a_kept_phone_s_role_anew():
    phone = BrokerAccount("ot-run-time", "", AccountKind.OWNTRACKS)
    saved = {"rolename": phone.rolename, "acls": acls(phone.rules)[1:]}
    role = _kept_role(saved, phone.username, AccountKind.OWNTRACKS)
    assert acl_set(role["acls"]) == acl_set(acls(phone.rules))


def test_a_restart_keeps_a_role_it_cannot_derive_as_the_broker_saved_it():
    # announcements of two grids no one grid's rules ask for: the grid is not read back, sync-roles decides
    odd = BrokerAccount("T-odd", "", AccountKind.TERMINAL, org=GRID)
    other = BrokerAccount("T-odd", "", AccountKind.TERMINAL, org="350102001001002")
    saved = {"rolename": odd.rolename, "acls": before_the_kind(odd) + [a for a in acls(other.rules)
                                                                       if "350102001001002" in a["topic"]]}
    assert _kept_role(saved, "T-odd", AccountKind.TERMINAL) == saved
    service = {"rolename": "ingest:ingest-9", "acls": [{"acltype": "subscribePattern", "topic": "x/#",
                                                         "allow": True}]}
    assert _kept_role(service, "ingest-9", AccountKind.INGEST) == service


# --- the running broker: sync-roles -----------------------------------------------------------------
@pytest.fixture(scope="module")
def worker(stack, city):
    with ThreadWorker(stack, index=86, share_group=f"sync{uuid.uuid4().hex[:6]}") as w:
        yield w


def cli_sync_roles(stack) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "registry.devices", "sync-roles"], cwd=REPO_ROOT,
                          capture_output=True, text=True, env={**os.environ, **stack.env()}, timeout=120)


def broker_acls(stack, rolename: str) -> list[dict]:
    control = DynsecControl(stack.mosquitto.port, stack.account("broker-admin"))
    try:
        [answer] = control.ask([{"command": "getRole", "rolename": rolename}])
    finally:
        control.close()
    return answer["data"]["role"]["acls"]


def publish_as(stack, terminal_id: str, password: str, topic: str, payload: bytes) -> str:
    probe = MqttProbe(stack.mosquitto.port, terminal_id, password)
    try:
        return probe.publish(topic, payload, qos=1)
    finally:
        probe.close()


def test_a_terminal_created_at_run_time_may_send_a_new_kind_once_its_role_is_synced(stack, settings, city, worker):
    admin = BrokerAdmin.from_settings(settings)
    registry = DeviceRegistry(settings.pg_dsn, admin)
    member_id, terminal_id = f"M-{uuid.uuid4().hex[:8]}", f"T-{uuid.uuid4().hex[:8]}"
    grid = city.grids[5].code
    credential = registry.add_member(Actor("test:sync-roles"), member_id, "同步 测试", "grid_administrator", grid,
                                     terminal_id)
    account = BrokerAccount(terminal_id, "", AccountKind.TERMINAL, org=grid)
    # the state an upgrade leaves: the role the broker saved before alarm_check existed
    admin.send([{"command": "modifyRole", "rolename": account.rolename, "acls": before_the_kind(account)}])
    t = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=5)
    topic, payload = payloads.publication("alarm_check", terminal_id, t, sensor_id=city.sensors[5].sensor_id,
                                          alarm_id="smoke-41", outcome="confirmed")
    assert publish_as(stack, terminal_id, credential.password, topic, payload) == "Not authorized"

    synced = sync_roles(settings.pg_dsn, admin)
    assert terminal_id in synced.changed and terminal_id not in synced.missing
    assert acl_set(broker_acls(stack, account.rolename)) == acl_set(acls(account.rules))
    assert publish_as(stack, terminal_id, credential.password, topic, payload) == "Success"
    stored = support.wait_for(lambda: owner_rows(stack, "select member_id, grid_code, outcome from alarm_checks "
                                                        "where terminal_id = %s and time = %s", terminal_id, t),
                              10, "the alarm check stored")
    assert stored == [(member_id, grid, "confirmed")]

    again = cli_sync_roles(stack)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("broker roles: 0 given their rules anew"), again.stdout
    assert acl_set(broker_acls(stack, account.rolename)) == acl_set(acls(account.rules))
