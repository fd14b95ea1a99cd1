"""`python -m dashboard.users …`: the people who sign in to the screens, and the wall screens' tokens.

    add NAME --role ROLE [--scope CODE] [--display NAME]   a new login (its password is generated
                                                            and shown once)
    passwd NAME            a new generated password, shown once; every session of NAME ends
    disable NAME / enable NAME                               disabling ends every session at once
    list
    token-create NAME [--scope CODE]   a wall screen's token, shown once with the URL to open
    token-revoke ID        the screen using it is disconnected within seconds
    token-list

Database settings as every app reads them (GCC_PG_*; `python -m stack users …` runs this against
the local demo stack). Roles: wall_viewer, dispatcher, leader, admin. A scope is an org code
(district, street, community or grid); none is the whole city.
"""
from __future__ import annotations

import argparse
import sys

import psycopg2

from config.settings import load_settings
from core.roles import UserRole
from dashboard.account_commands import AddUser, CreateWallToken, NewPassword, RevokeWallToken, SetUserDisabled
from dashboard.accounts import Accounts
from dashboard.authz import Identity
from dashboard.commands import Commands
from database.citydb import read_city

# Who the audit trail says did it: whoever holds the database's credentials on this machine.
CLI = Identity("cli", frozenset({UserRole.ADMIN}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard.users", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.value for r in UserRole])
    add.add_argument("--scope", default="")
    add.add_argument("--display", default=None)
    for name in ("passwd", "disable", "enable"):
        sub.add_parser(name).add_argument("name")
    sub.add_parser("list")
    create = sub.add_parser("token-create")
    create.add_argument("name")
    create.add_argument("--scope", default="")
    sub.add_parser("token-revoke").add_argument("id", type=int)
    sub.add_parser("token-list")
    args = parser.parse_args(argv)
    settings = load_settings()
    accounts = Accounts(settings.pg_dsn, pool_size=1)
    try:
        conn = psycopg2.connect(settings.pg_dsn, connect_timeout=5)
        try:
            city = read_city(conn)
        finally:
            conn.close()
        commands = Commands(city, None, settings.pg_dsn, producer="cli", accounts=accounts)   # audited, as on the page

        def run(command) -> str | None:
            result = commands.execute(CLI, command)
            if not result.ok:
                raise ValueError(result.reason)
            return result.reply

        if args.command == "add":
            password = run(AddUser(args.name, args.display or args.name, args.role, args.scope))
            print(f"added {args.name} ({args.role}, scope {args.scope or 'the whole city'}); password, shown once: "
                  f"{password}")
        elif args.command == "passwd":
            password = run(NewPassword(args.name))
            print(f"new password for {args.name}, shown once: {password} (every session of {args.name} has ended)")
        elif args.command in ("disable", "enable"):
            run(SetUserDisabled(args.name, args.command == "disable"))
            print(f"{args.name}: {args.command}d")
        elif args.command == "list":
            for user in accounts.users():
                print(f"{user['username']:<24} {user['role']:<12} {user['scope_code'] or '(city)':<16} "
                      f"{'disabled' if user['disabled'] else 'active':<9} last login {user['last_login_at'] or '-'}")
        elif args.command == "token-create":
            token = run(CreateWallToken(args.name, args.scope))
            print(f"wall token {args.name}; open once on the screen, shown once:\n"
                  f"  http://{settings.dashboard_host}:{settings.dashboard_port}/wall?kiosk=1&token={token}")
        elif args.command == "token-revoke":
            run(RevokeWallToken(args.id))
            print(f"wall token {args.id} revoked; its screens are disconnected")
        elif args.command == "token-list":
            for token in accounts.wall_tokens():
                state = f"revoked {token['revoked_at']:%Y-%m-%d %H:%M}" if token["revoked_at"] else "live"
                print(f"{token['id']:>4}  {token['name']:<28} {token['scope_code'] or '(city)':<16} {state:<24} "
                      f"last seen {token['last_seen_at'] or '-'}")
    except (ValueError, psycopg2.Error) as exc:
        print(f"refused: {getattr(exc, 'pgerror', None) or exc}", file=sys.stderr)
        return 2
    finally:
        accounts.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
