"""Who is asking: a signed-in handheld, as every handheld endpoint after the sign-in sees it."""
from __future__ import annotations

from dataclasses import dataclass

from core.roles import Role


@dataclass(frozen=True)
class Caller:
    """A phone with a live session: the device (kind `handheld`, not retired), the member it is
    bound to, and the member's dedicated terminal, as whose terminal the phone speaks (its
    uplinks' topics, the case notices and offers it receives, the cases it may handle)."""
    device_id: str
    member_id: str
    terminal_id: str
    grid_code: str      # the member's home grid: the cases it may see and verify
    role: Role
    name: str
