"""Announcements (通知公告): a dispatcher, leader or admin sends a message to every terminal of an
org unit of their scope (a grid, community, street or district), and sees who has read it.

`Announce` is a command (dashboard/commands.py: authorized for the org unit, audited). Its write
stores the announcement with its recipients, the terminals of the org unit's members at that
moment, in one transaction; the row is its own outbox: the cases engine publishes it to
`gcc/v1/org/<code>/announcement` (cases/notifier.py), which only the terminals of that org unit's
grids may read (the broker's roles: telemetry.topics). Terminals send a read receipt
(`…/announcement/read`), which the ingest stores; `sent_in` counts only a recipient's.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

import psycopg2
import psycopg2.extras

from core import freetext
from core.catalogue import AuditAction
from core.roles import USER_ROLE_LABELS, UserRole
from dashboard.authz import Identity, scope_of
from dashboard.commands import Action, Commands, Refused, Target, Written
from telemetry.notices import ANNOUNCEMENT_DAYS

ANNOUNCE = Action(AuditAction.ANNOUNCEMENT_SEND, frozenset({UserRole.DISPATCHER, UserRole.LEADER, UserRole.ADMIN}))
TITLE_MAX, BODY_MAX = 80, 2000


@dataclass(frozen=True)
class Announce:
    action: ClassVar[Action] = ANNOUNCE
    org_code: str
    title: str
    body: str
    days: int = 3

    @property
    def target_key(self) -> str:
        return f"announcement:{self.org_code}"

    def locate(self, ctx: Commands) -> Target | None:
        scope = scope_of(ctx.city, self.org_code) if self.org_code else None
        if scope is None:
            return None                     # the city as a whole has no topic: choose an org unit
        return Target(self.target_key, scope.code, f"{scope.name} · {self.title.strip()[:TITLE_MAX]}", scope.name)

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        if not self.title.strip() or not self.body.strip():
            raise Refused("an announcement needs a title and a text")
        try:
            title = freetext.clean(self.title, freetext.LINE, "an announcement's title")
            body = freetext.clean(self.body, freetext.NOTE, "an announcement's text")
        except ValueError as bad:
            raise Refused(str(bad)) from None
        if len(title) > TITLE_MAX or len(body) > BODY_MAX:
            raise Refused(f"a title has at most {TITLE_MAX} characters, a text at most {BODY_MAX}")
        if self.days not in ANNOUNCEMENT_DAYS:
            raise Refused(f"an announcement stays {', '.join(map(str, ANNOUNCEMENT_DAYS))} days, not {self.days}")
        expires = now + timedelta(days=self.days)
        name = who.display_name or who.user
        sender = f"{name} · {USER_ROLE_LABELS[who.role]}" if who.role else name
        cur.execute("select terminal_id from members where org_contains(%s, grid_code)", (self.org_code,))
        terminals = [t for (t,) in cur.fetchall()]
        if not terminals:
            raise Refused(f"{target.subject} has no members to read it")
        recipients = len(terminals)
        cur.execute("insert into announcements (org_code, org_name, title, body, sent_by, sender, created_at, "
                    "expires_at, recipients) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning id",
                    (self.org_code, target.subject, title, body, who.user, sender, now, expires, recipients))
        (announcement_id,) = cur.fetchone()
        psycopg2.extras.execute_values(cur, "insert into announcement_recipients (announcement_id, terminal_id) "
                                            "values %s", [(announcement_id, t) for t in terminals], page_size=1000)
        return Written(None, {"id": announcement_id, "org_code": self.org_code, "title": title,
                              "recipients": recipients, "expires": expires.isoformat()},
                       reply=f"announcement {announcement_id} to {recipients} terminals")


@dataclass(frozen=True)
class Sent:
    """An announcement as its page lists it."""
    announcement_id: int
    org_code: str
    org_name: str
    title: str
    body: str
    sender: str
    created_at: datetime
    expires_at: datetime
    published_at: datetime | None      # the broker took it
    recipients: int
    read: int                          # recipients who have read it


Rows = Callable[[str, tuple], list[tuple]]    # a query's rows (dashboard.queries.Queries.rows: its pool)


def sent_in(rows: Rows, scope_code: str, limit: int = 20) -> list[Sent]:
    """The latest announcements to org units within `scope_code` ("" the whole city), newest
    first, each with how many of its recipients have read it."""
    return [Sent(*row) for row in rows(
        "select a.id, a.org_code, a.org_name, a.title, a.body, a.sender, a.created_at, a.expires_at, a.sent_at, "
        "a.recipients, (select count(distinct r.terminal_id) from announcement_reads r "
        "join announcement_recipients x on x.announcement_id = r.announcement_id "
        "and x.terminal_id = r.terminal_id where r.announcement_id = a.id) "
        "from announcements a where org_contains(%s, a.org_code) order by a.id desc limit %s", (scope_code, limit))]


def unread_by_announcement(rows: Rows, announcement_ids: list[int], per: int = 30) -> dict[int, list[str]]:
    """For each announcement, up to `per` of its recipients' terminals that have not read it yet."""
    out: dict[int, list[str]] = {}
    for announcement_id, terminal_id in rows(
            "select announcement_id, terminal_id from (select x.announcement_id, x.terminal_id, "
            "row_number() over (partition by x.announcement_id order by x.terminal_id) as n "
            "from announcement_recipients x left join announcement_reads r "
            "on r.announcement_id = x.announcement_id and r.terminal_id = x.terminal_id "
            "where x.announcement_id = any(%s) and r.terminal_id is null) u where n <= %s",
            (announcement_ids, per)):
        out.setdefault(announcement_id, []).append(terminal_id)
    return out
