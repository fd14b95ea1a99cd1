"""Who acts, by role: the members in the field ("one grid, four members": `Role`, a terminal's
owner) and the people at the screens (`UserRole`, a dashboard login), with the words the screens
use for each. The one place a role is spelled; the database keeps the values as text.
"""
from __future__ import annotations

from enum import Enum

from core.catalogue import Label


class Role(str, Enum):
    """"One grid, four members"."""
    GRID_ADMINISTRATOR = "grid_administrator"    # 网格管理员, community staff
    GRID_COORDINATOR = "grid_coordinator"        # 网格协管员, dispatched cadre
    GRID_POLICE_OFFICER = "grid_police_officer"  # 网格民警
    GRID_SUPERVISOR = "grid_supervisor"          # 网格监督员, resident deputy


ROLE_LABELS: dict[Role, Label] = {
    Role.GRID_ADMINISTRATOR: Label("Administrator", "管理员"), Role.GRID_COORDINATOR: Label("Coordinator", "协管员"),
    Role.GRID_POLICE_OFFICER: Label("Police officer", "民警"), Role.GRID_SUPERVISOR: Label("Supervisor", "监督员"),
}


class UserRole(str, Enum):
    """What a person using the screens may do (not a grid member's role in the field)."""
    WALL_VIEWER = "wall_viewer"
    DISPATCHER = "dispatcher"
    LEADER = "leader"
    ADMIN = "admin"


EVERYONE = frozenset(UserRole)


USER_ROLE_LABELS = {UserRole.WALL_VIEWER: Label("Wall viewer", "大屏查看"),
                    UserRole.DISPATCHER: Label("Dispatcher", "调度员"),
                    UserRole.LEADER: Label("Leader", "领导"), UserRole.ADMIN: Label("Administrator", "管理员")}
