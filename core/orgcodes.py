"""Codes of the grid hierarchy, Beijing DB11 style.

    district   6 digits   GB/T 2260 administrative division code, e.g. 350102 (Gulou, Fuzhou)
    street     + 3 digits  e.g. 350102001
    community  + 3 digits  e.g. 350102001001
    grid       + 3 digits  e.g. 350102001001001   (15 digits in all)

Street, community and grid numbers run from 001, numbered west→east, north→south within their
parent. Every code knows its level and its parent.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

LENGTHS = {6: "district", 9: "street", 12: "community", 15: "grid"}


class Level(str, Enum):
    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"
    GRID = "grid"

    @property
    def code_length(self) -> int:
        return {"district": 6, "street": 9, "community": 12, "grid": 15}[self.value]

    @property
    def parent(self) -> Level | None:
        order = list(Level)
        index = order.index(self)
        return order[index - 1] if index else None

    @property
    def child(self) -> Level | None:
        order = list(Level)
        index = order.index(self)
        return order[index + 1] if index + 1 < len(order) else None


class InvalidCode(ValueError):
    pass


def level_of(code: str) -> Level:
    """The level of a valid code; InvalidCode with the reason otherwise."""
    if not isinstance(code, str) or not code.isascii() or not code.isdigit():
        raise InvalidCode(f"an org code is all digits: {code!r}")
    if len(code) not in LENGTHS:
        raise InvalidCode(f"an org code has 6, 9, 12 or 15 digits, not {len(code)}: {code!r}")
    province, district = int(code[:2]), code[4:6]
    if not 11 <= province <= 82:
        raise InvalidCode(f"unknown province prefix {code[:2]} in {code!r}")
    if district == "00":
        raise InvalidCode(f"{code[:6]} names a city, not a district")
    for start in range(6, len(code), 3):
        if code[start:start + 3] == "000":
            raise InvalidCode(f"number {code[start:start + 3]} at digits {start + 1}-{start + 3} of {code!r} "
                              f"must be 001-999")
    return Level(LENGTHS[len(code)])


def is_valid(code: str) -> bool:
    try:
        level_of(code)
    except InvalidCode:
        return False
    return True


def parent_of(code: str) -> str | None:
    """The code one level up (None for a district)."""
    level = level_of(code)
    return code[:level.parent.code_length] if level.parent else None


def ancestors(code: str) -> list[str]:
    """The code itself and every level above it, from the district down."""
    level = level_of(code)
    return [code[:lv.code_length] for lv in Level if lv.code_length <= level.code_length]


def ancestor(code: str, level: Level) -> str:
    """The code of the org unit at `level` that contains `code` (itself at its own level)."""
    own = level_of(code)
    if level.code_length > own.code_length:
        raise InvalidCode(f"a {own.value} has no {level.value} above it: {code!r}")
    return code[:level.code_length]


def child_code(parent: str, number: int) -> str:
    """The code of the `number`-th child (1-based) of `parent`."""
    level = level_of(parent)
    if level.child is None:
        raise InvalidCode(f"a grid has no child level: {parent!r}")
    if not 1 <= number <= 999:
        raise InvalidCode(f"child number must be 1-999, not {number}")
    return f"{parent}{number:03d}"


def contains(scope: str, code: str) -> bool:
    """True when `code` lies within the org unit `scope` (or is it; "" is the whole city). SQL
    says the same as `org_contains(scope, code)` (migration 0026): a query never spells a prefix
    pattern of its own."""
    return code.startswith(scope) and len(scope) <= len(code)


@dataclass(frozen=True)
class Scope:
    """An org unit as someone looks at it (a screen's scope, a read's): its code and name."""
    code: str                      # "" is the whole city
    name: str

    def covers(self, org_code: str | None) -> bool:
        return not self.code or (org_code is not None and contains(self.code, org_code))
