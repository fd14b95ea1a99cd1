"""The broker's accounts and what Mosquitto's dynamic security plugin is told about them: who a
device or service is to the broker (`BrokerAccount`: its kind, name and grid make its rules, from
`telemetry.topics.topic_rules`), the plugin's ACLs and stored form for it, the whole configuration
for a set of accounts (written by the local stack before the broker starts, merged with what the
broker saved at run time, its roles derived anew), whether a saved role allows what an account's
rules derive today (`rules_differ`), and the commands that change a running broker over $CONTROL
(`DynsecControl`, which the registry's `broker.BrokerAdmin` sends through).

Mosquitto's `acl_file` checks what a client may read only when a message is delivered, never its
SUBSCRIBE: a device could join the ingest share group and make the broker drop its round-robin
share of everyone's messages. The plugin checks subscriptions against roles, binds an account to
its client id (nobody can take over another account's session) and takes new accounts at run time.
Every account gets one role (Mosquitto 2.0's plugin has no %u/%c patterns, so a device's role names
its own topics) and its client id is bound (`topics.bound_client_id`). Default access: nothing.

The broker process itself (its configuration file, its start, its health) is the local stack's
(stack/mosquitto.py); this module is what production needs too.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import secrets
import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from core.orgcodes import ancestors
from core.passwords import ITERATIONS as PBKDF2_ITERATIONS  # the plugin's own default (PW_DEFAULT_ITERATIONS)
from telemetry.topics import (
    CONTROL_TOPIC,
    DEVICE_KINDS,
    AccountKind,
    TopicRule,
    bound_client_id,
    org_topic,
    topic_rules,
)


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


def acl_set(role_acls: list[dict]) -> frozenset[tuple[str, str, bool]]:
    """What a role's ACLs allow, as the plugin weighs them: (type, topic, allow), in no order. The
    priority is left out: ours are all allows at the default, the default access refuses the rest."""
    return frozenset((a["acltype"], a["topic"], bool(a.get("allow", False))) for a in role_acls)


def rules_differ(account: BrokerAccount, role_acls: list[dict]) -> bool:
    """Whether a role the broker holds (its ACLs as `getRole`/`listRoles` or its file give them)
    allows other than the account's rules now derive (a kind added since, a grid moved)."""
    return acl_set(role_acls) != acl_set(acls(account.rules))


_ORG_HEAD, _ORG_TAIL = org_topic("\0").split("\0")


def account_of_role(role: dict) -> BrokerAccount | None:
    """The device account a saved role is for, with what its rules derive from (no password): the
    rolename gives kind and username (`BrokerAccount.rolename`); a terminal's grid is read back
    from the announcements its role may read (the deepest org unit), and taken only when the
    rules of that grid ask for exactly those. None for a service's role, a name that is no
    device's, or a terminal's grid that cannot be read back: its saved role is then kept as it
    is (`python -m registry.devices sync-roles` derives it from the registry's tables)."""
    kind_name, _, username = role.get("rolename", "").partition(":")
    try:
        kind = AccountKind(kind_name)
    except ValueError:
        return None
    if kind not in DEVICE_KINDS or not username:
        return None
    org = ""
    if kind is AccountKind.TERMINAL:
        read = {a["topic"][len(_ORG_HEAD):-len(_ORG_TAIL)] for a in role.get("acls", [])
                if a.get("acltype") == "subscribeLiteral" and a["topic"].startswith(_ORG_HEAD)
                and a["topic"].endswith(_ORG_TAIL)}
        org = max(read, key=len, default="")
        try:
            if set(ancestors(org) if org else []) != read:
                return None
        except ValueError:
            return None
    try:
        topic_rules(kind, username, org)       # an id that cannot be a device's topic level: not ours
    except ValueError:
        return None
    return BrokerAccount(username, "", kind, org=org)


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
    while it ran (only their hash exists) are kept, their roles derived anew where the role says
    what from (`account_of_role`: a kind added since is allowed at once) and kept as saved where
    not; for an account in both, the saved password hash and disabled flag are kept (rotated or
    revoked at run time), and the rules are ours (derived from kind, name and grid)."""
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
    roles = ours["roles"] + [_rederived(r) for r in previous.get("roles", [])
                             if r["rolename"] in kept_roles - our_roles]
    return {**ours, "clients": clients + kept, "roles": roles}


def _rederived(role: dict) -> dict:
    """A saved role with the ACLs its account's rules derive today, or as saved when they cannot be."""
    account = account_of_role(role)
    return role if account is None else {**role, "acls": acls(account.rules)}


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

    def ask(self, commands: list[dict]) -> list[dict]:
        """Send commands in one message and return the plugin's responses, one per command in
        their order (each with its `data`, or its `error`)."""
        self.client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
        try:
            answer = self.responses.get(timeout=self.timeout)
        except queue.Empty:
            raise DynsecError(f"no answer to {len(commands)} control commands") from None
        return answer.get("responses", [])

    def send(self, commands: list[dict]) -> None:
        """Send commands in one message; raise DynsecError naming every command that failed."""
        failed = [f"{r.get('command')}: {r['error']}" for r in self.ask(commands) if r.get("error")]
        if failed:
            raise DynsecError("; ".join(failed))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
