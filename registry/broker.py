"""The registry's side of the broker: device accounts created, disabled, given a new password or
new rules while it runs, over Mosquitto's dynamic security plugin ($CONTROL). The plugin stores the
password hashed (PBKDF2-SHA512, salted); nobody keeps it in clear: it is shown once to whoever
made it."""
from __future__ import annotations

import secrets

from registry.dynsec import BrokerAccount, DynsecControl, DynsecError, create_commands, role_commands
from telemetry.topics import AccountKind


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
