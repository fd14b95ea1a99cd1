"""Live feeds: what a page subscribes to. A page declares its feed; the hub (hub.py) serves it.

A feed names the change kinds its page draws and how each travels to the browser (`wire`: the
fields that page shows, nothing more; a kind is a live change's KIND, declared by its message kind's
module in telemetry/kinds/ or by telemetry.live for the changes made elsewhere), how to build its
snapshot (what a screen needs to redraw from scratch), and any periodic pushes (the wall's heat
map). The hub keeps one room per (feed, scope): a screen receives only its own feed's changes, only
for its scope.

Frames are merged per room between flushes: for kinds with a coalescing key (a terminal's fix,
a member's status) only the newest survives; the others (alarms, reports, task acknowledgements)
are all kept, in order.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dashboard.authz import Scope
from telemetry import live


@dataclass(frozen=True)
class Periodic:
    event: str                     # the Socket.IO event the page listens to
    every_s: float
    build: Callable[[Any, Scope], Any]   # (queries, scope) -> payload


@dataclass(frozen=True)
class Feed:
    name: str
    wire: dict[str, Callable[[Any, live.Change], Any]]   # change kind -> (queries, change) -> browser form
    snapshot: Callable[[Any, Scope], dict]                # (queries, scope) -> snapshot body
    periodic: tuple[Periodic, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.wire) - set(live.CHANGE_TYPES))
        if unknown:   # a typo, or a kind no module declares (telemetry.kinds): the page would wait for nothing
            raise ValueError(f"feed {self.name!r}: no live change of kind(s) {unknown}; "
                             f"the kinds are {sorted(live.CHANGE_TYPES)}")

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self.wire)

    def room(self, scope: Scope) -> str:
        return f"{self.name}@{scope.code or 'city'}"


@dataclass
class Frame:
    """The changes of one room since its last frame, merged."""
    coalesced: dict[tuple, live.Change] = field(default_factory=dict)
    events: list[live.Change] = field(default_factory=list)

    def add(self, change: live.Change) -> None:
        key = change.coalesce_key
        if key is None:
            self.events.append(change)
            return
        kept = self.coalesced.get((change.KIND, key))
        if kept is None or kept.t <= change.t:
            self.coalesced[(change.KIND, key)] = change

    def encode(self, feed: Feed, queries, scope: Scope, seq: int) -> dict:
        """The frame as the browser receives it: {feed, scope, seq, t, changes: {kind: [...]}}."""
        changes: dict[str, list] = {}
        for change in (*self.coalesced.values(), *self.events):
            wired = feed.wire[change.KIND](queries, change)
            if wired is not None:            # None: not for this feed's screens (a phone's status on the wall)
                changes.setdefault(change.KIND, []).append(wired)
        return {"feed": feed.name, "scope": scope.code, "seq": seq, "t": time.time(), "changes": changes}
