"""The local demo's logins to the screens and its wall token (`make demo` only; a real deployment
creates its own users with `python -m dashboard.users`).

`admin`, `dispatcher`, `leader` and `viewer` over the whole city and `dispatcher-<street code>` over
the first street, created once with the passwords the caller keeps (the local stack generates them
into its data dir); every start makes a fresh wall token for the kiosk and revokes the previous one.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from core.city import City
from core.roles import UserRole
from dashboard.accounts import Accounts

WALL_TOKEN = "demo wall (make demo)"


@dataclass(frozen=True)
class DemoLogin:
    username: str
    display_name: str
    role: UserRole
    scope: str          # an org code; "" the whole city


def wanted(city: City) -> list[DemoLogin]:
    street = city.streets[0]
    return [DemoLogin("admin", "Administrator 管理员", UserRole.ADMIN, ""),
            DemoLogin("dispatcher", "Dispatcher 调度员", UserRole.DISPATCHER, ""),
            DemoLogin("leader", "Leader 领导", UserRole.LEADER, ""),
            DemoLogin("viewer", "Wall viewer 大屏", UserRole.WALL_VIEWER, ""),
            DemoLogin(f"dispatcher-{street.code}", f"{street.name} dispatcher 街道调度员", UserRole.DISPATCHER,
                      street.code)]


def ensure(dsn: str, city: City, passwords: dict[str, str]) -> tuple[list[tuple[str, str, str, str]], str]:
    """The demo logins (each created if missing, with its password from `passwords`) and a fresh
    wall token: ([(username, role, scope name, password)], token)."""
    accounts = Accounts(dsn, pool_size=1)
    try:
        existing = {u["username"] for u in accounts.users()}
        logins = []
        for login in wanted(city):
            password = passwords[login.username]
            if login.username not in existing:
                accounts.add_user(login.username, login.display_name, login.role, login.scope, password,
                                  created_by="make demo")
            logins.append((login.username, login.role.value, city.org_name(login.scope) if login.scope else city.name,
                           password))
        now = datetime.now(timezone.utc)
        for token in accounts.wall_tokens():
            if token["name"] == WALL_TOKEN and token["revoked_at"] is None:
                accounts.revoke_wall_token(token["id"], "make demo", now)
        _, token = accounts.create_wall_token(WALL_TOKEN, "", created_by="make demo")
    finally:
        accounts.close()
    return logins, token
