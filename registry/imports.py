"""A community's members from CSV (a header row, then one member a row):

    member_id,name,role,grid_code,terminal_id
    M-0601,王芳,grid_administrator,350102002003001,T-0601

Every row is checked first, as `add-member` checks it (columns, ids, role, grid, ids taken — by a
member, a device or a gateway — or repeated): one bad row refuses the file, with every bad row's
line number and why. Then each member is added as `add-member` does it (its terminal's broker
account, the password handed back once, audited row by row); a row refused then (a change made
meanwhile, the broker) stops the import there with `ImportStopped`, which carries the passwords of
the members already added."""
from __future__ import annotations

import csv
import io

import psycopg2

from core import freetext
from core.roles import Role
from registry.store import Actor, Credential, DeviceRegistry, RegistryError, valid_id

COLUMNS = ("member_id", "name", "role", "grid_code", "terminal_id")


def rows_of(text: str) -> list[dict[str, str]]:
    """The file's rows as dicts of the columns (RegistryError if it is not our CSV)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))   # Excel writes a BOM
    try:
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise RegistryError(f"the header must be {','.join(COLUMNS)}, got {','.join(reader.fieldnames or [])}")
        return [{k: (v or "").strip() for k, v in row.items() if k in COLUMNS} for row in reader]
    except csv.Error as exc:
        raise RegistryError(f"line {reader.line_num}: not CSV as Excel writes it: {exc}") from None


def problems(rows: list[dict[str, str]], dsn: str) -> list[str]:
    roles = {r.value for r in Role}
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select code from grids where code = any(%s)", ([r["grid_code"] for r in rows],))
            grids = {c.strip() for (c,) in cur.fetchall()}
            cur.execute("select member_id from members where member_id = any(%s)", ([r["member_id"] for r in rows],))
            members = {m for (m,) in cur.fetchall()}
            cur.execute("select device_id from member_devices where device_id = any(%s) "
                        "union select gateway_id from gateways where gateway_id = any(%s)",
                        ([r["terminal_id"] for r in rows], [r["terminal_id"] for r in rows]))
            devices = {d for (d,) in cur.fetchall()}
    finally:
        conn.close()
    found, seen = [], set()
    for line, row in enumerate(rows, start=2):
        why = [f"{c} is empty" for c in COLUMNS if not row.get(c)]
        why += [f"{key} {row[key]!r}: 1-64 characters, no whitespace, no / + #" for key in ("member_id", "terminal_id")
                if row.get(key) and not valid_id(row[key])]
        wrong = freetext.problem(row.get("name") or "", freetext.NAME)
        why += [f"name {wrong}"] if wrong else []
        if row.get("role") not in roles:
            why.append(f"role {row['role']!r} is not one of {', '.join(sorted(roles))}")
        why += [f"no grid {row['grid_code']!r}"] if row.get("grid_code") and row["grid_code"] not in grids else []
        why += [f"member {row['member_id']!r} exists"] if row.get("member_id") in members else []
        why += [f"terminal {row['terminal_id']!r} is taken"] if row.get("terminal_id") in devices else []
        for key in ("member_id", "terminal_id"):
            if row.get(key) and (key, row[key]) in seen:
                why.append(f"{key} {row[key]!r} repeats an earlier line")
            seen.add((key, row.get(key)))
        found += [f"line {line}: {'; '.join(why)}"] if why else []
    return found


def import_members(registry: DeviceRegistry, actor: Actor, text: str) -> list[Credential]:
    rows = rows_of(text)
    if not rows:
        raise RegistryError("the file has no members")
    bad = problems(rows, registry.dsn)
    if bad:
        raise RegistryError(f"nothing imported, {len(bad)} bad row(s): " + " | ".join(bad))
    added: list[Credential] = []
    for line, r in enumerate(rows, start=2):
        try:
            added.append(registry.add_member(actor, r["member_id"], r["name"], r["role"], r["grid_code"],
                                             r["terminal_id"]))
        except RegistryError as exc:     # checked above, so a concurrent change or the broker
            raise ImportStopped(f"stopped at line {line}: {exc}; the {len(added)} members before it were added",
                                added) from None
    return added


class ImportStopped(RegistryError):
    """An import refused part-way (after its checks): the members added before, with their passwords."""

    def __init__(self, message: str, added: list[Credential]) -> None:
        super().__init__(message)
        self.added = added
