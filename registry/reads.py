"""What the registry's pages read (members, their devices, gateways, sensors, buildings): the
database's record, so a change shows at once, before the registry's watch reloads the city."""
from __future__ import annotations

import secrets

from core import freetext
from core.orgcodes import Scope
from database.reads import Reads, like_escape


def _name(column: str) -> str:
    """A name column as the registry's pages list it: at most a name's length (one stored before
    the limit would make a list of hundreds unusable in the browser), as read_city cuts it."""
    n = freetext.NAME.max_length
    return f"(case when length({column}) > {n} then left({column}, {n - 1}) || '…' else {column} end)"


class RegistryReads(Reads):
    def member_devices(self, scope: Scope) -> list[tuple]:
        """The scope's members' active devices beyond their own terminals (the phones added), newest
        first: (device, kind, label, added, member, name, grid)."""
        return self.rows(f"select d.device_id, d.kind, {_name('d.label')}, d.added_at, m.member_id, "
                         f"{_name('m.name')}, m.grid_code "
                         "from member_devices d join members m using (member_id) "
                         "where d.retired_at is null and m.retired_at is null and org_contains(%s, m.grid_code) "
                         "and d.device_id <> m.terminal_id order by d.added_at desc, d.device_id limit 200",
                         (scope.code,))

    def device_grid(self, device_id: str) -> str | None:
        """The grid of an active device's member (what an admin's scope is checked against)."""
        rows = self.rows("select m.grid_code from member_devices d join members m using (member_id) "
                         "where d.device_id = %s and d.retired_at is null", (device_id,))
        return rows[0][0] if rows else None

    def new_device_id(self, member_id: str, kind: str) -> str:
        """A fresh id for a member's new phone: readable, never used before (ids are never reused)."""
        prefix = {"owntracks": "ot", "osmand": "tc"}.get(kind, "dev")
        for n in range(1, 100):
            candidate = f"{prefix}-{member_id}-{n}"
            if not self.rows("select 1 from member_devices where device_id = %s", (candidate,)):
                return candidate
        return f"{prefix}-{member_id}-{secrets.token_hex(3)}"

    @staticmethod
    def _like(search: str) -> str:
        """`search` anywhere in a column (ilike), its own % and _ taken literally."""
        return "%" + like_escape(search) + "%"

    def registry_members(self, scope: Scope, search: str, limit: int) -> tuple[list[tuple], int]:
        """The scope's active members matching `search` (id, name, terminal, grid code or name), by
        grid: ([(member, name, role, grid, terminal, phones)], how many match)."""
        rows = self.rows(f"""
            select m.member_id, {_name("m.name")}, m.role, m.grid_code, m.terminal_id,
                   (select count(*) from member_devices d where d.member_id = m.member_id
                       and d.retired_at is null and d.device_id <> m.terminal_id),
                   count(*) over ()
              from members m join grids g on g.code = m.grid_code
             where m.retired_at is null and org_contains(%s, m.grid_code)
               and (%s = '' or m.member_id ilike %s or m.name ilike %s or m.terminal_id ilike %s
                    or m.grid_code ilike %s or g.name ilike %s)
             order by m.grid_code, m.member_id limit %s""",
                         (scope.code, search, *[self._like(search)] * 5, limit))
        return [r[:6] for r in rows], (rows[0][6] if rows else 0)

    def registry_member(self, member_id: str) -> tuple | None:
        """An active member: (member, name, role, grid, terminal, [their other active devices])."""
        rows = self.rows(f"""
            select m.member_id, {_name("m.name")}, m.role, m.grid_code, m.terminal_id,
                   array(select d.device_id from member_devices d where d.member_id = m.member_id
                         and d.retired_at is null and d.device_id <> m.terminal_id order by d.device_id)
              from members m where m.member_id = %s and m.retired_at is null""", (member_id,))
        return rows[0] if rows else None

    def registry_gateways(self, scope: Scope, search: str, limit: int) -> tuple[list[tuple], int]:
        """The scope's active gateways matching `search` (id, building id or name, grid code):
        ([(gateway, kind, protocol, building, building name, grid, active sensors)], how many)."""
        rows = self.rows(f"""
            select w.gateway_id, w.kind, w.protocol, w.building_id, {_name("b.name")}, w.grid_code,
                   (select count(*) from sensors s where s.gateway_id = w.gateway_id and s.retired_at is null),
                   count(*) over ()
              from gateways w join buildings b using (building_id)
             where w.retired_at is null and org_contains(%s, w.grid_code)
               and (%s = '' or w.gateway_id ilike %s or w.building_id ilike %s or b.name ilike %s
                    or w.grid_code ilike %s)
             order by w.grid_code, w.gateway_id limit %s""",
                         (scope.code, search, *[self._like(search)] * 4, limit))
        return [r[:7] for r in rows], (rows[0][7] if rows else 0)

    def registry_sensors(self, gateway_id: str) -> list[tuple]:
        """A gateway's active sensors: (sensor, kind, building, building name, grid)."""
        return self.rows(f"select s.sensor_id, s.kind, s.building_id, {_name('b.name')}, s.grid_code from sensors s "
                         "join buildings b using (building_id) where s.gateway_id = %s and s.retired_at is null "
                         "order by s.sensor_id", (gateway_id,))

    def registry_grid(self, what: str, key: str) -> str | None:
        """The grid of an active gateway, sensor or building (what an admin's scope is checked against)."""
        table, column, active = {"gateway": ("gateways", "gateway_id", "retired_at is null"),
                                 "sensor": ("sensors", "sensor_id", "retired_at is null"),
                                 "building": ("buildings", "building_id", "true")}[what]
        rows = self.rows(f"select grid_code from {table} where {column} = %s and {active}", (key,))
        return rows[0][0] if rows else None

    def buildings_matching(self, scope: Scope, search: str, limit: int = 50) -> list[tuple]:
        """Buildings of the scope whose id or name matches: (building, name, grid)."""
        return self.rows(f"select building_id, {_name('name')}, grid_code from buildings "
                         "where org_contains(%s, grid_code) and (building_id ilike %s or name ilike %s) "
                         "order by grid_code, building_id limit %s",
                         (scope.code, self._like(search), self._like(search), limit))
