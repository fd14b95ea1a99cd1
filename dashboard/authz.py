"""Who is asking, and may they: the one authorization point of the dashboard.

`authorize(identity, guarded, scope_code)` answers for a page (the router, the Socket.IO connect
handler) and for an action (every command that changes data) alike: the identity must hold one of
the roles the page or action names, and the scope must be an org unit of the city inside the
identity's own subtree. Nothing else decides; the browser is never trusted to hide anything.

`current_identity` is who signed in (dashboard.auth: a person's or a wall screen's session), or
None; a request without one never reaches a page or a callback (the gate in dashboard.auth).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from core.city import City
from core.orgcodes import Scope, contains  # Scope: where a screen looks (core owns containment)
from core.roles import UserRole


@dataclass(frozen=True)
class Identity:
    user: str                      # a username, or "wall:<token name>" for a wall screen
    roles: frozenset[UserRole]
    scope_code: str = ""           # the org unit this identity belongs to; "" is the whole city
    display_name: str = ""

    @property
    def role(self) -> UserRole | None:
        """The one role a login holds (users have one)."""
        return next(iter(sorted(self.roles, key=lambda r: r.value)), None)


def current_identity() -> Identity | None:
    """Who is asking (in a request or a socket handler): the signed-in session's identity, or None."""
    from flask_login import current_user

    user = current_user
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.identity


class Guarded(Protocol):
    """A page or an action: something only some roles may do."""
    roles: frozenset[UserRole]

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str                    # why not (or "allowed")
    scope: Scope | None = None     # the scope that was granted
    status: int = 200              # 403 refused, 404 no such org unit

    def __bool__(self) -> bool:
        return self.allowed


def scope_of(city: City, code: str | None) -> Scope | None:
    """The scope of an org unit of this city ("" or None: the whole city), or None if there is
    no such org unit."""
    if not code:
        return Scope("", city.name)
    if code in city.org_by_code or code in city.grid_by_code:
        return Scope(code, city.org_name(code))
    return None


def asked_scope(identity: Identity | None, params) -> str:
    """The scope a request asks for: its `scope` parameter, or, without one (or an empty one), the
    identity's own org unit: a street's dispatcher opening /wall sees their street, never more."""
    asked = params.get("scope")
    if asked:
        return str(asked)
    return identity.scope_code if identity is not None else ""


def authorize(city: City, identity: Identity | None, guarded: Guarded, scope_code: str | None) -> Decision:
    """May `identity` use `guarded` (a page or an action) at `scope_code`?"""
    if identity is None:
        return Decision(False, "nobody has signed in", status=401)
    if not identity.roles & guarded.roles:
        return Decision(False, f"{identity.user} holds none of the roles that {guarded.name} needs", status=403)
    scope = scope_of(city, scope_code)
    if scope is None:
        return Decision(False, f"{scope_code!r} is not an org unit of {city.name}", status=404)
    if identity.scope_code and not contains(identity.scope_code, scope.code):
        return Decision(False, f"{scope.code} lies outside {identity.user}'s scope {identity.scope_code}", status=403)
    return Decision(True, "allowed", scope)
