"""Who may see the ledger's personal data beyond its masks, and where (PIPL: "a permission that must
be granted per user and scope"): a row of `ledger_grants` gives one screen user one
`core.ledger.Permission` — `UNMASK` (a resident's ID number and phone in full, each view audited)
or `RESTRICTED_TAGS` (the restricted tags, `core.ledger.RESTRICTED_TAGS`) — over one org unit, and
a grant on an org unit covers everything it contains (`org_contains`, the one rule of containment;
"" is the whole city).

A grant is never deleted: revoking stamps `revoked_at`, so the history of who could see what stays
readable; granting again the same permission for the same unit opens the row anew. Each grant and
revocation writes its audit row (core.catalogue.AuditAction.LEDGER_GRANT / LEDGER_REVOKE) in the
caller's transaction, with the change it records.

Who may grant is the caller's to decide (an admin's screen authorizes it for the org unit first,
as every write of the screens); these functions keep the rows and the trail consistent. Until a
screen grants, an operator does, audited as "cli":

    python -m ledger.grants grant USERNAME unmask --scope 350102004001 --reason "…"
    python -m ledger.grants revoke USERNAME unmask --scope 350102004001 --reason "…"
    python -m ledger.grants list USERNAME
"""
from __future__ import annotations

import argparse
import sys
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime

import psycopg2

from config.settings import load_settings
from core.catalogue import AuditAction
from core.ledger import Permission
from core.orgcodes import is_valid
from database.audit import write_audit

REASON_MAX = 200     # a grant's reason, as an unmasked view's (ledger.reads.UNMASK_REASON_MAX)


class GrantError(ValueError):
    """A grant or revocation refused, with the reason in words."""


@dataclass(frozen=True)
class Grant:
    username: str
    permission: Permission
    scope_code: str
    granted_by: str
    granted_at: datetime
    reason: str


def holds(cur, username: str, permission: Permission, org_code: str) -> bool:
    """Does `username` hold `permission` (unrevoked) for an org unit containing `org_code`
    (a grid, a community, …; the unit itself counts)? Asked at each read and each unmasked view:
    a revocation takes effect at the next request."""
    cur.execute("select exists (select 1 from ledger_grants where username = %s and permission = %s "
                "and revoked_at is null and org_contains(scope_code, %s))",
                (username, Permission(permission).value, org_code))
    return bool(cur.fetchone()[0])


def holds_any(cur, username: str, permission: Permission, within: str = "") -> bool:
    """Does `username` hold `permission` anywhere that overlaps `within` (a unit containing it, or
    one inside it)? A page uses this to decide whether to offer a control at all; each use is
    still checked with `holds` for the record's own org unit."""
    cur.execute("select exists (select 1 from ledger_grants where username = %s and permission = %s "
                "and revoked_at is null and (org_contains(scope_code, %s) or org_contains(%s, scope_code)))",
                (username, Permission(permission).value, within, within))
    return bool(cur.fetchone()[0])


def grants_of(cur, username: str) -> list[Grant]:
    """The user's grants in force, by permission and org unit."""
    cur.execute("select username, permission, scope_code, granted_by, granted_at, reason from ledger_grants "
                "where username = %s and revoked_at is null order by permission, scope_code", (username,))
    return [Grant(u, Permission(p), s, by, at, r) for u, p, s, by, at, r in cur.fetchall()]


def _checked(permission: str, scope_code: str, reason: str) -> tuple[Permission, str]:
    """The permission and the reason as stored, or GrantError naming what is wrong."""
    try:
        permission = Permission(permission)
    except ValueError:
        raise GrantError(f"{permission!r} is not a ledger permission "
                         f"({', '.join(p.value for p in Permission)})") from None
    if scope_code and not is_valid(scope_code):
        raise GrantError(f"{scope_code!r} is not an org code")
    reason = (reason or "").strip()
    if not reason:
        raise GrantError("a grant needs its reason")
    if len(reason) > REASON_MAX:
        raise GrantError(f"a reason has at most {REASON_MAX} characters, this one {len(reason)}")
    return permission, reason


def grant(cur, actor: str, actor_roles: list[str], username: str, permission: Permission | str, scope_code: str,
          reason: str, source_address: str | None = None) -> Grant:
    """Give `username` `permission` over `scope_code` ("" the whole city), with the reason, and its
    audit row, in the caller's transaction. Granted again after a revocation: in force again."""
    permission, reason = _checked(permission, scope_code, reason)
    cur.execute("select 1 from users where username = %s", (username,))
    if cur.fetchone() is None:
        raise GrantError(f"there is no user {username!r}")
    cur.execute("""
        insert into ledger_grants (username, permission, scope_code, granted_by, reason)
        values (%s, %s, %s, %s, %s)
        on conflict (username, permission, scope_code) do update
           set granted_by = excluded.granted_by, granted_at = now(), reason = excluded.reason, revoked_at = null
        returning granted_at""", (username, permission.value, scope_code, actor, reason))
    granted_at = cur.fetchone()[0]
    write_audit(cur, actor, actor_roles, AuditAction.LEDGER_GRANT, f"user:{username}", scope_code, "done", reason,
                after={"permission": permission.value, "scope_code": scope_code}, source_address=source_address)
    return Grant(username, permission, scope_code, actor, granted_at, reason)


def revoke(cur, actor: str, actor_roles: list[str], username: str, permission: Permission | str, scope_code: str,
           reason: str, source_address: str | None = None) -> None:
    """Take back `username`'s `permission` over `scope_code` (GrantError if not in force), with its
    audit row, in the caller's transaction. Grants on other units (above or below) stay."""
    permission, reason = _checked(permission, scope_code, reason)
    cur.execute("update ledger_grants set revoked_at = now() where username = %s and permission = %s "
                "and scope_code = %s and revoked_at is null", (username, permission.value, scope_code))
    if cur.rowcount != 1:
        raise GrantError(f"{username} holds no {permission.value} grant for {scope_code or 'the whole city'}")
    write_audit(cur, actor, actor_roles, AuditAction.LEDGER_REVOKE, f"user:{username}", scope_code, "done", reason,
                before={"permission": permission.value, "scope_code": scope_code}, source_address=source_address)


def main(argv: list[str] | None = None, dsn: str | None = None) -> int:
    """The operator's command line (see the module); 0 done, 2 refused with the reason on stderr."""
    parser = argparse.ArgumentParser(prog="python -m ledger.grants", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("grant", "revoke"):
        change = sub.add_parser(name)
        change.add_argument("username")
        change.add_argument("permission", choices=[p.value for p in Permission])
        change.add_argument("--scope", default="", help="an org code; none: the whole city")
        change.add_argument("--reason", required=True)
    sub.add_parser("list").add_argument("username")
    args = parser.parse_args(argv)
    with closing(psycopg2.connect(dsn or load_settings().pg_dsn, connect_timeout=5)) as conn, conn, \
            conn.cursor() as cur:
        try:
            if args.command == "list":
                for held in grants_of(cur, args.username):
                    print(f"{held.permission.value}\t{held.scope_code or '(city)'}\t{held.granted_by}\t"
                          f"{held.granted_at:%Y-%m-%d %H:%M}\t{held.reason}")
                return 0
            change = grant if args.command == "grant" else revoke
            change(cur, "cli", ["admin"], args.username, args.permission, args.scope, args.reason)
        except GrantError as refused:
            print(f"refused: {refused}", file=sys.stderr)
            return 2
    print(f"{args.command} {args.permission} for {args.username} over {args.scope or 'the whole city'}: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
