"""Mosquitto 2 for the local stack: accounts and access through the dynamic security plugin.

Mosquitto's `acl_file` checks what a client may read only when a message is delivered, never its
SUBSCRIBE: a device could join the ingest share group and make the broker drop its round-robin
share of everyone's messages. The dynamic security plugin (shipped with Debian's mosquitto) checks
subscriptions against roles, binds an account to its client id (nobody can take over another
account's session) and takes new accounts at run time over $CONTROL.

- Every account gets one role built from `telemetry.topics.topic_rules` (Mosquitto 2.0's plugin
  has no %u/%c patterns, so a device's role names its own topics), and its client id is bound
  (`topics.bound_client_id`). Default access: nothing (publish, subscribe, receive).
- Before the broker starts, the stack writes the plugin's whole configuration from its accounts
  (`dynsec_config`); while it runs, accounts are added over $CONTROL (`DynsecControl`): the plugin
  saves its file after every command, so a bulk of accounts goes in by rewriting the file and
  restarting the broker instead (sessions persist).
"""
from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import queue
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from config.settings import REPO_ROOT
from telemetry.topics import CONTROL_TOPIC, AccountKind, TopicRule, bound_client_id, topic_rules

from .process import ManagedServer, RunAs, ServerProcess, wait_until, write_private

PLUGIN_GLOBS = ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so",
                "/usr/local/lib/mosquitto_dynamic_security.so")
DYNSEC_FILE = "dynamic-security.json"
PBKDF2_ITERATIONS = 101   # the plugin's own default (PW_DEFAULT_ITERATIONS)
MAX_CONNECTIONS = 30000   # the listener's cap (the big city has ~23,000 devices)


@dataclass(frozen=True)
class BrokerAccount:
    username: str
    password: str
    kind: AccountKind
    disabled: bool = False     # revoked (a lost handset): the broker refuses its logins
    org: str = ""              # a terminal's grid: it may read the announcements of the grid and above

    @classmethod
    def generate(cls, username: str, kind: AccountKind, org: str = "") -> BrokerAccount:
        return cls(username=username, password=secrets.token_urlsafe(18), kind=kind, org=org)

    @property
    def rules(self) -> list[TopicRule]:
        return topic_rules(self.kind, self.username, self.org)

    @property
    def client_id(self) -> str:
        return bound_client_id(self.kind, self.username)

    @property
    def rolename(self) -> str:
        return f"{self.kind.value}:{self.username}"


def plugin_path() -> str:
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise FileNotFoundError("mosquitto_dynamic_security.so not found (Debian's mosquitto package ships it)")


def acls(rules: list[TopicRule]) -> list[dict]:
    """The plugin's ACL entries for an account's topic rules."""
    out = []
    for rule in rules:
        if rule.access == "publish":
            out.append({"acltype": "publishClientSend", "topic": rule.topic, "allow": True})
            continue
        wildcard = any(c in rule.topic for c in "+#")
        out.append({"acltype": "subscribePattern" if wildcard else "subscribeLiteral", "topic": rule.topic,
                    "allow": True})
        if rule.shared:
            out.append({"acltype": "subscribePattern", "topic": f"$share/+/{rule.topic}", "allow": True})
        out.append({"acltype": "publishClientReceive", "topic": rule.topic, "allow": True})
    return out


def _password_fields(password: str) -> dict:
    """The plugin's stored form: PBKDF2-HMAC-SHA512 with a 12-byte salt (as it hashes itself)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": PBKDF2_ITERATIONS}


def _client(account: BrokerAccount) -> dict:
    return {"username": account.username, "clientid": account.client_id, "textname": account.kind.value,
            "roles": [{"rolename": account.rolename}], "disabled": account.disabled,
            **_password_fields(account.password)}


def dynsec_config(accounts: list[BrokerAccount]) -> dict:
    """The plugin's whole configuration for these accounts: a role each, nothing by default."""
    return {
        "clients": [_client(a) for a in accounts],
        "roles": [{"rolename": a.rolename, "acls": acls(a.rules)} for a in accounts],
        "groups": [],
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                             "unsubscribe": True},
    }


def merged_config(ours: dict, previous: dict | None) -> dict:
    """The plugin's configuration from our accounts, over the one the broker last saved: the
    broker's record is the truth for what changed at run time. Accounts the registry created
    while it ran (only their hash exists) are kept with their roles; for an account in both, the
    saved password hash and disabled flag are kept (rotated or revoked at run time), and the
    rules are ours (derived from kind, name and grid)."""
    if not previous:
        return ours
    saved = {c["username"]: c for c in previous.get("clients", [])}
    ours_names = {c["username"] for c in ours["clients"]}
    clients = []
    for client in ours["clients"]:
        old = saved.get(client["username"])
        if old is not None and "password" in old:
            client = {**client, **{k: old[k] for k in ("password", "salt", "iterations") if k in old},
                      "disabled": old.get("disabled", False) or client["disabled"]}
        clients.append(client)
    kept = [c for name, c in saved.items() if name not in ours_names]
    our_roles = {r["rolename"] for r in ours["roles"]}
    kept_roles = {r["rolename"] for c in kept for r in c.get("roles", [])}
    roles = ours["roles"] + [r for r in previous.get("roles", []) if r["rolename"] in kept_roles - our_roles]
    return {**ours, "clients": clients + kept, "roles": roles}


def create_commands(account: BrokerAccount) -> list[dict]:
    """The $CONTROL commands that add one account to a running broker."""
    client = {"command": "createClient", "username": account.username, "clientid": account.client_id,
              "password": account.password, "textname": account.kind.value}
    # the role by addClientRole, not createClient's "roles": Mosquitto 2.0.11 (Debian 12) leaves a
    # client created with roles out of the role's own client list, so a later deleteRole does not
    # take the role off the client and the addClientRole that follows (role_commands: a member
    # moved to another grid) fails with "Internal error"
    role = {"command": "addClientRole", "username": account.username, "rolename": account.rolename}
    disable = [{"command": "disableClient", "username": account.username}] if account.disabled else []
    return [{"command": "createRole", "rolename": account.rolename, "acls": acls(account.rules)}, client, role,
            *disable]


def role_commands(account: BrokerAccount) -> list[dict]:
    """The $CONTROL commands that give a running broker's account its rules anew (a terminal whose
    member moved to another grid reads that grid's announcements from now on)."""
    return [{"command": "deleteRole", "rolename": account.rolename},
            {"command": "createRole", "rolename": account.rolename, "acls": acls(account.rules)},
            {"command": "addClientRole", "username": account.username, "rolename": account.rolename}]


def config_text(*, port: int, data_dir: Path) -> str:
    return f"""# Generated by stack on every start; edit config/mosquitto.conf.in instead.
{(REPO_ROOT / "config" / "mosquitto.conf.in").read_text()}
listener {port} 127.0.0.1
max_connections {MAX_CONNECTIONS}
persistence_location {data_dir}/
plugin {plugin_path()}
plugin_opt_config_file {data_dir}/{DYNSEC_FILE}
"""


class MosquittoServer(ManagedServer):
    """The broker; it is healthy once `health_account` can log in."""

    name = "mosquitto"

    def __init__(self, data_dir: Path, port: int, run_as: RunAs | None, log_dir: Path,
                 run_dir: Path, health_account: BrokerAccount) -> None:
        self.data_dir = data_dir
        self.port = port
        self.run_as = run_as
        self.health_account = health_account
        self.process = ServerProcess(
            self.name, [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(data_dir / "mosquitto.conf")],
            log_path=log_dir / "mosquitto.log", pid_path=run_dir / "mosquitto.pid", run_as=run_as)

    @property
    def running(self) -> bool:
        return self.process.pid is not None and self.process.exited() is None

    def answering(self) -> bool:
        """True when a broker (this one, or one another process started) takes logins on our port."""
        try:
            return mqtt_login_ok("127.0.0.1", self.port, self.health_account)
        except (OSError, TimeoutError):
            return False

    def write_accounts(self, accounts: list[BrokerAccount]) -> None:
        """Write the plugin's configuration (the broker must not be running: it owns the file then),
        keeping what the file already holds and `accounts` do not say (`merged_config`)."""
        path = self.data_dir / DYNSEC_FILE
        previous = json.loads(path.read_text()) if path.exists() else None
        write_private(path, json.dumps(merged_config(dynsec_config(accounts), previous)), owner=self.run_as)

    def set_disabled_in_file(self, username: str, disabled: bool) -> None:
        """Revoke or restore an account while the broker is down (it reads the file at its start)."""
        path = self.data_dir / DYNSEC_FILE
        if not path.exists():
            return
        config = json.loads(path.read_text())
        for client in config.get("clients", []):
            if client.get("username") == username:
                client["disabled"] = disabled
        write_private(path, json.dumps(config), owner=self.run_as)

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_private(self.data_dir / "mosquitto.conf", config_text(port=self.port, data_dir=self.data_dir),
                      owner=self.run_as)
        self.process.start()
        wait_until(lambda: mqtt_login_ok("127.0.0.1", self.port, self.health_account),
                   timeout=timeout, what="Mosquitto to accept a login", proc=self.process)


class DynsecError(RuntimeError):
    pass


class DynsecControl:
    """The broker admin's side of $CONTROL/dynamic-security/v1: send commands, await the answers."""

    def __init__(self, port: int, admin: BrokerAccount, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
        self.timeout = timeout
        self.responses: queue.Queue = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=admin.client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.username_pw_set(admin.username, admin.password)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = lambda c, u, msg: self.responses.put(json.loads(msg.payload))
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(CONTROL_TOPIC + "/response", qos=1)
        if not subscribed.wait(timeout):
            self.close()
            raise DynsecError("no SUBACK from the broker's control topic")

    def send(self, commands: list[dict]) -> None:
        """Send commands in one message; raise DynsecError naming every command that failed."""
        self.client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
        try:
            answer = self.responses.get(timeout=self.timeout)
        except queue.Empty:
            raise DynsecError(f"no answer to {len(commands)} control commands") from None
        failed = [f"{r.get('command')}: {r['error']}" for r in answer.get("responses", []) if r.get("error")]
        if failed:
            raise DynsecError("; ".join(failed))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_login_ok(host: str, port: int, account: BrokerAccount | None, timeout: float = 3.0) -> bool:
    """Connect with MQTT v5; True only for a successful CONNACK."""
    return mqtt_connect_reason(host, port, account, timeout) == "Success"


def mqtt_connect_reason(host: str, port: int, account: BrokerAccount | None, timeout: float = 3.0,
                        client_id: str | None = None) -> str:
    """The broker's CONNACK reason for this login, e.g. "Success" or "Not authorized". The client
    id is the account's bound one unless given."""
    done = threading.Event()
    result: dict[str, str] = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        result["reason"] = str(reason_code)
        done.set()

    client_id = client_id or (account.client_id if account else None) or f"health-{secrets.token_hex(4)}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
    if account is not None:
        client.username_pw_set(account.username, account.password)
    client.on_connect = on_connect
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise TimeoutError("no CONNACK")
        return result["reason"]
    finally:
        client.disconnect()
        client.loop_stop()
