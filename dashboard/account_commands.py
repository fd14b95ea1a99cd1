"""The commands that change people's logins and wall screens (the admin page and the CLI
`python -m dashboard.users`), through the command bus: dashboard.accounts does the SQL, here in
the audit row's transaction."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from core.catalogue import AuditAction
from core.roles import USER_ROLE_LABELS, UserRole
from dashboard import accounts as logins
from dashboard.authz import Identity
from dashboard.commands import Action, Commands, Refused, Target, Written

_ADMIN = frozenset({UserRole.ADMIN})
ADD_USER = Action(AuditAction.USER_ADD, _ADMIN)
NEW_PASSWORD = Action(AuditAction.USER_PASSWORD, _ADMIN)
DISABLE_USER = Action(AuditAction.USER_DISABLE, _ADMIN)
ENABLE_USER = Action(AuditAction.USER_ENABLE, _ADMIN)
CREATE_WALL_TOKEN = Action(AuditAction.WALL_TOKEN_CREATE, _ADMIN)
REVOKE_WALL_TOKEN = Action(AuditAction.WALL_TOKEN_REVOKE, _ADMIN)


def _generated_password() -> str:
    return secrets.token_urlsafe(12)      # 16 characters, 96 bits; shown once


def _user_summary(ctx: Commands, username: str, role: str, scope_code: str) -> str:
    role_label = USER_ROLE_LABELS.get(role, role)   # a str-valued enum: the value finds it
    return f"{username} · {role_label} · {ctx.where(scope_code)}"


def _locate_user(ctx: Commands, key: str, username: str) -> Target | None:
    row = ctx.one("select username, role, scope_code, disabled from users where username = %s", (username,))
    if row is None:
        return None
    return Target(key, row["scope_code"], _user_summary(ctx, username, row["role"], row["scope_code"]), row)


@dataclass(frozen=True)
class AddUser:
    """A new login with one role over one org unit; its password is generated and shown once."""
    action: ClassVar[Action] = ADD_USER
    username: str
    display_name: str
    role: str
    scope_code: str = ""

    @property
    def target_key(self) -> str:
        return f"user:{self.username}"

    def locate(self, ctx: Commands) -> Target | None:
        # the scope is the target's: authorize refuses one outside the admin's subtree, or none at all
        return Target(self.target_key, self.scope_code, _user_summary(ctx, self.username, self.role, self.scope_code))

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        display = self.display_name.strip() or self.username
        password = _generated_password()
        try:
            added = logins.insert_user(cur, self.username, display, UserRole(self.role), self.scope_code,
                                logins.hash_password(password), who.user)
        except ValueError as bad:
            raise Refused(str(bad)) from None
        if not added:
            raise Refused(f"there is already a user {self.username}")
        after = {"display_name": display, "role": self.role, "scope_code": self.scope_code}
        return Written(None, after, reply=password)


@dataclass(frozen=True)
class NewPassword:
    """A new generated password, shown once; every session of the user ends."""
    action: ClassVar[Action] = NEW_PASSWORD
    username: str

    @property
    def target_key(self) -> str:
        return f"user:{self.username}"

    def locate(self, ctx: Commands) -> Target | None:
        return _locate_user(ctx, self.target_key, self.username)

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        password = _generated_password()
        if not logins.update_password(cur, self.username, logins.hash_password(password), now):
            raise Refused(f"there is no user {self.username} (any more)")
        return Written(None, {"password_changed_at": now.isoformat()}, reply=password, sessions_ended=True)


@dataclass(frozen=True)
class SetUserDisabled:
    """Disable a login (every session of it ends at once) or enable it again."""
    username: str
    disabled: bool

    @property
    def action(self) -> Action:
        return DISABLE_USER if self.disabled else ENABLE_USER

    @property
    def target_key(self) -> str:
        return f"user:{self.username}"

    def locate(self, ctx: Commands) -> Target | None:
        return _locate_user(ctx, self.target_key, self.username)

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        if self.disabled and self.username == who.user:
            raise Refused("nobody disables their own login (another admin can)")
        if target.subject["disabled"] == self.disabled:
            raise Refused(f"{self.username} is already {'disabled' if self.disabled else 'enabled'}")
        logins.update_disabled(cur, self.username, self.disabled, now)
        return Written({"disabled": target.subject["disabled"]}, {"disabled": self.disabled},
                       sessions_ended=self.disabled)


@dataclass(frozen=True)
class CreateWallToken:
    """A named token for a wall screen of one scope; the token is shown once, stored hashed."""
    action: ClassVar[Action] = CREATE_WALL_TOKEN
    name: str
    scope_code: str = ""

    @property
    def target_key(self) -> str:
        return f"wall_token:{self.name}"

    def locate(self, ctx: Commands) -> Target | None:
        return Target(self.target_key, self.scope_code, f"{self.name} · {ctx.where(self.scope_code)}")

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        try:
            token_id, token, name = logins.insert_wall_token(cur, self.name, self.scope_code, who.user)
        except ValueError as bad:
            raise Refused(str(bad)) from None
        return Written(None, {"id": token_id, "name": name, "scope_code": self.scope_code}, reply=token)


@dataclass(frozen=True)
class RevokeWallToken:
    """Revoke a wall screen's token: its screens are disconnected within seconds."""
    action: ClassVar[Action] = REVOKE_WALL_TOKEN
    token_id: int

    @property
    def target_key(self) -> str:
        return f"wall_token:{self.token_id}"

    def locate(self, ctx: Commands) -> Target | None:
        row = ctx.one("select id, name, scope_code, revoked_at from wall_tokens where id = %s", (self.token_id,))
        if row is None:
            return None
        return Target(self.target_key, row["scope_code"], f"{row['name']} · {ctx.where(row['scope_code'])}", row)

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        if not logins.update_revoked(cur, self.token_id, who.user, now):
            raise Refused(f"wall token {self.token_id} is already revoked")
        return Written({"revoked": False}, {"revoked": True}, sessions_ended=True)
