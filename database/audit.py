"""The audit trail's one writer (audit_log, migration 0005: append-only). The screens' commands
(dashboard.commands) and the registry (registry.store: its CLI and the admin page) write through it."""
from __future__ import annotations

from typing import Any

import orjson


def write_audit(cur, actor: str, roles: list[str], action: str, target: str | None, scope_code: str | None,
                outcome: str, reason: str | None, before: Any = None, after: Any = None,
                source_address: str | None = None) -> None:
    """One row of the audit trail, in the caller's transaction (with the change it records)."""
    cur.execute("insert into audit_log (actor, roles, action, target, scope_code, outcome, reason, before, after, "
                "source_address) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (actor, sorted(roles), action, target, scope_code, outcome, reason, _json(before), _json(after),
                 source_address))


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None
