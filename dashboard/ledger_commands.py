"""The basic-data page's one command (dashboard/pages/ledger.py): a resident's ID number and phone
seen in full, through the command bus like every write of the screens (the bus authorizes the
role and the resident's grid; this command refuses without a reason, checks the viewer's
Permission.UNMASK grant for that grid inside its transaction and writes the audit row: who, when,
which resident, the reason, the grid, and which fields were opened, never their values).

Who works on a community's ledger (`LEDGER_ROLES`): leaders and admins of an org unit. Dispatchers
and wall viewers never see personal data on the ledger's page."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import psycopg2

from core import freetext
from core.catalogue import AuditAction
from core.ledger import Permission
from core.roles import UserRole
from dashboard.commands import Action, Commands, Refused, Target, Written, write_audit
from ledger import grants, privacy
from ledger import reads as ledger_reads

LEDGER_ROLES = frozenset({UserRole.LEADER, UserRole.ADMIN})
UNMASK = Action(AuditAction.LEDGER_UNMASK, LEDGER_ROLES)


@dataclass(frozen=True)
class UnmaskResident:
    """See a resident's ID number and phone in full (an OwnTransaction of the bus: its audit row
    carries the reason in the trail's reason column). Refused without a reason, for a resident
    outside the viewer's scope (the bus, by the resident's grid), or without UNMASK over that grid."""
    action: ClassVar[Action] = UNMASK
    resident_id: int
    reason: str
    sealer: privacy.Sealer | None = field(repr=False, compare=False)

    @property
    def target_key(self) -> str:
        return f"resident:{self.resident_id}"

    def locate(self, commands: Commands) -> Target | None:
        reason = (self.reason or "").strip()
        if not reason:
            raise Refused("type the reason for seeing this resident's personal data in full")
        if len(reason) > ledger_reads.UNMASK_REASON_MAX:
            raise Refused(f"a reason has at most {ledger_reads.UNMASK_REASON_MAX} characters")
        if problem := freetext.problem(reason, freetext.LINE):
            raise Refused(f"the reason {problem}")
        found = commands.one("select grid_code from residents where resident_id = %s "
                             "and (moved_out is null or moved_out > current_date)", (self.resident_id,))
        return Target(self.target_key, found["grid_code"].strip(), self.target_key) if found else None

    def run(self, commands: Commands, who, target: Target, source_address: str | None) -> Written:
        if self.sealer is None:
            raise Refused("the ledger's key is not configured here (GCC_LEDGER_KEY)")
        conn = psycopg2.connect(commands.dsn, connect_timeout=5, application_name="gcc-dashboard")
        try:
            with conn, conn.cursor() as cur:
                if not grants.holds(cur, who.user, Permission.UNMASK, target.scope_code):
                    raise Refused(f"{who.user} holds no grant to see personal data in full for {target.scope_code}")
                values = ledger_reads.open_personal(cur, self.sealer, self.resident_id)
                write_audit(cur, who, UNMASK.key, self.target_key, target.scope_code, "done", self.reason.strip(),
                            after={"fields": [k for k, v in values.items() if v is not None]},
                            source_address=source_address)
        finally:
            conn.close()
        return Written(None, None, handed=values)
