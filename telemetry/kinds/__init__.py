"""The message kinds: one module per kind in this package, each registering its `Kind` (base.py says
what a kind declares). Every module here is loaded when the package is, so a new kind is found by
being here; nothing else lists the kinds.

Adding a kind: its module here (model, topic leaf and payload fields, sender, table, retention, live
projection), a migration creating its table, and the simulator's sending of it. The broker's ACL,
the ingest's subscription, the decoders' routing, the ingest chain and store, the database grants
and retention, and the live bus read it from here.

Readers (derived once, at import):
    KINDS        model type -> Kind       (kind_of(message): the chain's per-message lookup)
    TABLES       table -> Kind
    BY_LEAF      (device, topic leaf) -> Kind, for our JSON (telemetry.decoders.gcc_json)
"""
from __future__ import annotations

import importlib
import pkgutil

from telemetry.kinds.base import JsonTopic, Kind, LiveChange, Tagged, live_time

__all__ = ["BY_LEAF", "KINDS", "TABLES", "JsonTopic", "Kind", "LiveChange", "Tagged", "change_types", "kind_of",
           "live_time", "register", "uplink_leaves"]

KINDS: dict[type, Kind] = {}
TABLES: dict[str, Kind] = {}
BY_NAME: dict[str, Kind] = {}
BY_LEAF: dict[tuple[str, str], Kind] = {}


def register(kind: Kind) -> Kind:
    """Called once by each kind's module. Two kinds may not share a name, model, table or topic."""
    clashes = [what for what, taken in (("name", kind.name in BY_NAME), ("model", kind.model in KINDS),
                                        ("table", kind.table in TABLES),
                                        ("topic", kind.json is not None
                                         and (kind.json.device, kind.json.leaf) in BY_LEAF)) if taken]
    if clashes:
        raise ValueError(f"kind {kind.name!r}: its {', '.join(clashes)} belong(s) to another kind already")
    _check_fields(kind)
    BY_NAME[kind.name] = KINDS[kind.model] = TABLES[kind.table] = kind
    if kind.json is not None:
        BY_LEAF[(kind.json.device, kind.json.leaf)] = kind
    return kind


def _check_fields(kind: Kind) -> None:
    """What a kind declares must name its model's fields: the sender's id (checked against the
    registry), the time, and every payload field of its JSON (a typo would refuse every message)."""
    fields = set(kind.model.model_fields)
    needed = {f"{kind.sender}_id", "time"}
    if kind.json is not None:
        needed |= kind.json.fields | set(kind.json.fixed) | {kind.json.id_field}
    missing = sorted(needed - fields)
    if missing:
        raise ValueError(f"kind {kind.name!r}: its model {kind.model.__name__} has no field(s) {missing}")


def kind_of(message) -> Kind:
    return KINDS[type(message)]


def uplink_leaves(device: str) -> tuple[str, ...]:
    """The topic leaves a terminal or a gateway publishes our JSON on (telemetry.topics' ACL and filters)."""
    return tuple(leaf for (owner, leaf) in BY_LEAF if owner == device)


def change_types() -> tuple[type[LiveChange], ...]:
    """The live changes the kinds make (telemetry.live adds those made elsewhere: cases, acknowledgements)."""
    return tuple(k.change_type for k in KINDS.values() if k.change_type is not None)


def _load_every_kind() -> None:
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if module != "base":
            importlib.import_module(f"{__name__}.{module}")


_load_every_kind()
