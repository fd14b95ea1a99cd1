"""What the broker is told (registry/dynsec.py): one role per account from telemetry.topics, each
device limited to its own topics with no wildcard and no share group, every account bound to its
client id, nothing allowed by default."""
from __future__ import annotations

import base64
import hashlib

import pytest

from registry.dynsec import BrokerAccount, acls, create_commands, dynsec_config, merged_config, role_commands
from telemetry import kinds
from telemetry.topics import OWNTRACKS_UPLINK, AccountKind, topic_rules


def _role(config: dict, rolename: str) -> list[dict]:
    return next(r["acls"] for r in config["roles"] if r["rolename"] == rolename)


def test_a_terminal_role_names_only_its_own_topics_literally():
    config = dynsec_config([BrokerAccount("T9", "pw", AccountKind.TERMINAL)])
    entries = _role(config, "terminal:T9")
    assert all("/terminal/T9/" in e["topic"] for e in entries)      # no grid: no announcements either
    assert not any(c in e["topic"] for e in entries for c in "+#$")
    subscribe = [e for e in entries if e["acltype"].startswith("subscribe")]
    assert subscribe == [{"acltype": "subscribeLiteral", "topic": f"gcc/v1/terminal/T9/{leaf}", "allow": True}
                         for leaf in ("task", "notice")]
    published = {e["topic"] for e in entries if e["acltype"] == "publishClientSend"}
    assert published == {f"gcc/v1/terminal/T9/{leaf}" for leaf in kinds.uplink_leaves("terminal")}  # each kind's
    assert published >= {f"gcc/v1/terminal/T9/{leaf}" for leaf in ("fix", "status", "incident", "task/ack", "case",
                                                                   "announcement/read", "diary", "alarm/check")}


def test_a_terminal_reads_the_announcements_of_its_grid_and_every_org_unit_above_it_and_no_other():
    grid = "350102001002003"
    entries = _role(dynsec_config([BrokerAccount("T9", "pw", AccountKind.TERMINAL, org=grid)]), "terminal:T9")
    orgs = [e["topic"] for e in entries if e["acltype"] == "subscribeLiteral" and "/org/" in e["topic"]]
    assert orgs == [f"gcc/v1/org/{code}/announcement" for code in ("350102", "350102001", "350102001002", grid)]
    received = {e["topic"] for e in entries if e["acltype"] == "publishClientReceive"}
    assert set(orgs) <= received
    assert not any(e["acltype"] == "publishClientSend" and "/org/" in e["topic"] for e in entries)
    moved = role_commands(BrokerAccount("T9", "pw", AccountKind.TERMINAL, org="350102002001001"))
    assert [c["command"] for c in moved] == ["deleteRole", "createRole", "addClientRole"]
    assert "gcc/v1/org/350102002/announcement" in {a["topic"] for a in moved[1]["acls"]}
    assert "gcc/v1/org/350102001/announcement" not in {a["topic"] for a in moved[1]["acls"]}


def test_an_ingest_worker_may_subscribe_in_any_share_group_and_receive_only_uplink():
    entries = _role(dynsec_config([BrokerAccount("ingest-1", "pw", AccountKind.INGEST)]), "ingest:ingest-1")
    patterns = {e["topic"] for e in entries if e["acltype"] == "subscribePattern"}
    assert "$share/+/gcc/v1/terminal/+/fix" in patterns and "gcc/v1/terminal/+/fix" in patterns
    assert not any(e["acltype"] == "publishClientSend" for e in entries)
    assert "gcc/v1/terminal/+/task" not in {e["topic"] for e in entries}   # never a downlink topic


def test_nothing_is_allowed_by_default_and_every_account_is_bound_to_its_client_id():
    accounts = [BrokerAccount("T9", "pw", AccountKind.TERMINAL), BrokerAccount("ingest-2", "pw", AccountKind.INGEST),
                BrokerAccount("broker-health", "pw", AccountKind.HEALTH)]
    config = dynsec_config(accounts)
    assert config["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False,
                                          "subscribe": False, "unsubscribe": True}
    clients = {c["username"]: c for c in config["clients"]}
    assert clients["T9"]["clientid"] == "T9" and clients["ingest-2"]["clientid"] == "ingest-2"
    assert clients["broker-health"]["clientid"] == "broker-health" and _role(config, "health:broker-health") == []
    assert all(client["clientid"] == client["username"] for client in clients.values())


def test_passwords_are_stored_as_the_plugin_hashes_them():
    [client] = dynsec_config([BrokerAccount("T9", "s3cret", AccountKind.TERMINAL)])["clients"]
    salt = base64.b64decode(client["salt"])
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, client["iterations"])
    assert len(salt) == 12 and base64.b64decode(client["password"]) == expected and "s3cret" not in str(client)


def test_an_account_added_at_run_time_gets_the_same_role():
    account = BrokerAccount("G7", "pw", AccountKind.GATEWAY)
    role, client, member = create_commands(account)
    assert role["command"] == "createRole" and role["acls"] == acls(topic_rules(AccountKind.GATEWAY, "G7"))
    assert client["command"] == "createClient" and client["clientid"] == "G7" and "roles" not in client
    # in the role by its own command (Mosquitto 2.0.11 links a role given to createClient one way only)
    assert member == {"command": "addClientRole", "username": "G7", "rolename": "gateway:G7"}


@pytest.mark.parametrize("bad_id", ["", "a/b", "a+b", "#", "x y", "$SYS"])
def test_device_ids_that_would_escape_their_topic_are_rejected(bad_id):
    with pytest.raises(ValueError):
        dynsec_config([BrokerAccount(bad_id, "x", AccountKind.TERMINAL)])


def test_an_owntracks_phone_may_publish_only_the_topics_the_app_uses():
    published = {r.topic for r in topic_rules(AccountKind.OWNTRACKS, "alice") if r.access == "publish"}
    assert "owntracks/alice/+" in published and "owntracks/alice/+/event" in published
    assert published == {"owntracks/alice/+", *(f"owntracks/alice/+/{leaf}" for leaf in OWNTRACKS_UPLINK)}
    assert not any("#" in topic for topic in published)        # no endless supply of topics to dead-letter


# --- the stack's start keeps what the broker changed while it ran (issue 14) ------------------------
def test_a_restart_keeps_accounts_the_registry_created_and_their_roles():
    ours = [BrokerAccount("T-1", "pw-1", AccountKind.TERMINAL, org="350102001001001")]
    saved = dynsec_config(ours + [BrokerAccount("ot-new", "pw-new", AccountKind.OWNTRACKS)])
    merged = merged_config(dynsec_config(ours), saved)
    assert [c["username"] for c in merged["clients"]] == ["T-1", "ot-new"]
    assert {r["rolename"] for r in merged["roles"]} == {"terminal:T-1", "owntracks:ot-new"}
    kept = next(c for c in merged["clients"] if c["username"] == "ot-new")
    assert kept == next(c for c in saved["clients"] if c["username"] == "ot-new")   # its hash, as the broker had it


def test_a_restart_keeps_a_rotated_password_and_a_revocation_but_writes_our_rules():
    saved = dynsec_config([BrokerAccount("T-1", "rotated", AccountKind.TERMINAL, disabled=True, org="350102001001001")])
    ours = [BrokerAccount("T-1", "original", AccountKind.TERMINAL, org="350102001001002")]
    merged = merged_config(dynsec_config(ours), saved)
    client = merged["clients"][0]
    assert (client["password"], client["salt"], client["disabled"]) == \
        (saved["clients"][0]["password"], saved["clients"][0]["salt"], True)
    assert any("350102001001002" in acl["topic"] for acl in merged["roles"][0]["acls"])
