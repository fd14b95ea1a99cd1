"""The registry's side of the broker: device accounts created, disabled, given a new password or
new rules while it runs, over Mosquitto's dynamic security plugin ($CONTROL), and every account's
role brought in line with the rules of today (`BrokerAdmin.sync_roles`: after an upgrade that adds
a message kind). The plugin stores the password hashed (PBKDF2-SHA512, salted); nobody keeps it in
clear: it is shown once to whoever made it."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from registry.dynsec import (
    BrokerAccount,
    DynsecControl,
    DynsecError,
    create_commands,
    role_commands,
    rules_differ,
)
from telemetry.topics import AccountKind

ROLE_PAGE = 500                 # roles per listRoles answer (about 1 MB for 500 terminals' roles)
MAX_CONTROL_MESSAGE = 96 * 1024  # bytes of commands per message: the broker takes packets up to 128 KiB


def new_password() -> str:
    return secrets.token_urlsafe(18)


class BrokerAdmin:
    """Sends one change's commands in one message, on a connection of its own (changes are rare;
    a long-lived admin connection would be one more thing to keep alive)."""

    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        self.host, self.port = host, port
        self.admin = BrokerAccount(username, password, AccountKind.BROKER_ADMIN)

    @classmethod
    def from_settings(cls, settings) -> BrokerAdmin | None:
        """The settings' broker admin, or None when they name none (the registry then refuses to
        change devices: their accounts could not follow)."""
        password = settings.broker_admin_password.get_secret_value()
        if not password:
            return None
        return cls(settings.mqtt_host, settings.mqtt_port, settings.broker_admin_username, password)

    def exists(self, username: str) -> bool:
        """Whether the broker has an account of that name (a service's, or a device's)."""
        try:
            self.send([{"command": "getClient", "username": username}])
        except DynsecError as exc:
            if "not found" in str(exc).lower():
                return False
            raise
        return True

    def send(self, commands: list[dict]) -> None:
        if not commands:
            return
        control = DynsecControl(self.port, self.admin, host=self.host)
        try:
            control.send(commands)
        finally:
            control.close()

    def sync_roles(self, accounts: list[BrokerAccount]) -> RoleSync:
        """Give every one of `accounts` whose role on the broker allows other than its rules now
        derive (`rules_differ`: a message kind added by an upgrade, a grid changed behind the
        registry's back) its role anew (`role_commands`); the others are left alone, so a second
        run changes nothing. Reads the broker's roles first (listRoles, verbose, a page at a time)
        rather than rewriting all: every role command makes the plugin rewrite its whole file and
        drop the role's connected clients. Measured on the demo city (1,729 registry accounts, a
        2.6 MB plugin file): reading and comparing all takes 0.1-0.2 s, rewriting every role ~230 s.
        An account with no role on the broker is reported, not created: its password is not ours."""
        control = DynsecControl(self.port, self.admin, host=self.host, timeout=60.0)
        try:
            saved = _roles(control)
            stale = [a for a in accounts if a.rolename in saved and rules_differ(a, saved[a.rolename])]
            for batch in _batches([role_commands(a) for a in stale]):
                control.send(batch)
        finally:
            control.close()
        return RoleSync(changed=tuple(a.username for a in stale),
                        unchanged=sum(1 for a in accounts if a.rolename in saved) - len(stale),
                        missing=tuple(a.username for a in accounts if a.rolename not in saved))


@dataclass(frozen=True)
class RoleSync:
    """What `BrokerAdmin.sync_roles` did: the accounts given their role anew, how many were in line
    already, and the accounts the broker has no role for (left as they are)."""
    changed: tuple[str, ...]
    unchanged: int
    missing: tuple[str, ...]


def _roles(control: DynsecControl) -> dict[str, list[dict]]:
    """Every role on the broker with its ACLs, read a page at a time (listRoles, verbose)."""
    roles: dict[str, list[dict]] = {}
    offset = 0
    while True:
        [answer] = control.ask([{"command": "listRoles", "verbose": True, "count": ROLE_PAGE, "offset": offset}])
        if answer.get("error"):
            raise DynsecError(f"listRoles: {answer['error']}")
        page = answer["data"]["roles"]
        roles.update((r["rolename"], r.get("acls", [])) for r in page)
        offset += len(page)
        if len(page) < ROLE_PAGE or offset >= answer["data"]["totalCount"]:
            return roles


def _batches(per_account: list[list[dict]]) -> list[list[dict]]:
    """Accounts' commands in messages the broker takes (each under MAX_CONTROL_MESSAGE bytes), an
    account's commands never split between two."""
    batches: list[list[dict]] = []
    size = 0
    for commands in per_account:
        length = len(json.dumps(commands))
        if not batches or size + length > MAX_CONTROL_MESSAGE:
            batches.append([])
            size = 0
        batches[-1].extend(commands)
        size += length
    return batches


def create(username: str, kind: AccountKind, password: str, org: str = "") -> list[dict]:
    return create_commands(BrokerAccount(username, password, kind, org=org))


def set_disabled(username: str, disabled: bool) -> list[dict]:
    """Disabling drops a connected client at once and refuses its logins (the plugin's disableClient)."""
    return [{"command": "disableClient" if disabled else "enableClient", "username": username}]


def set_password(username: str, password: str) -> list[dict]:
    return [{"command": "setClientPassword", "username": username, "password": password}]


def set_org(username: str, kind: AccountKind, org: str) -> list[dict]:
    """A terminal's rules anew: it reads the announcements of its (new) grid and the units above."""
    return role_commands(BrokerAccount(username, "", kind, org=org))
