"""What the dashboard serves and who may use it, declared where each thing is defined.

- A screen declares itself once, in its own module of `dashboard/pages/`: `PAGE = page(path,
  label, roles, layout, feed=…)`. The shell finds the page modules itself (`pages()` imports every
  module of the package), so adding a screen is adding its module.
- A callback declares who may run it and what it changes where it is defined, with this module's
  `callback` / `clientside_callback` in place of Dash's: they register the callback with Dash and
  record the declaration under the key Dash dispatches it on (its `output`, as in Dash's callback
  map). `changes` names the actions it performs (the command bus authorizes and audits each again,
  for its target's org unit); clientside callbacks never reach the server, but say who they serve.
- A Flask route declares who may use it where it is registered (`route`, `declare_route` for the
  routes Dash registers itself); a page's downloads with `export`, which the app registers.

Why not Dash Pages' `register_page`: its router (`use_pages`, `page_container`) builds a page's
layout from the path alone, while ours (app.route) first authorizes the page for the identity and
the scope the URL asks (403 and an audit row, 404 for an unknown org unit), draws the header or
the kiosk, and hands the layout the granted scope; `page()` keeps Dash Pages' habit (the module
registers itself, the app reads the registry) with that metadata.

The gate (`dashboard.auth`) reads these declarations and refuses what has none; a test walks the
app's routes and callbacks and fails on one without a declaration. Dash keeps its callbacks in a
process-wide map (`GLOBAL_CALLBACK_MAP`), and so do the callback and page declarations here; a
route's declaration lives on its Flask app (`server.extensions`), since an app's routes are its own.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import dash
from dash._callback import GLOBAL_CALLBACK_LIST
from flask import Flask

from core.catalogue import Label
from core.roles import UserRole

if TYPE_CHECKING:
    from dashboard.commands import Action
    from dashboard.feeds import Feed

PAGES_PACKAGE = "dashboard.pages"
_ROUTES = "gcc.routes"          # server.extensions key: the app's route declarations


# --- pages ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    path: str
    label: Label
    roles: frozenset[UserRole]
    layout: Callable[..., Any]     # (app state, scope, kiosk) -> Dash component
    feed: Feed | None = None       # what it receives live; None: nothing
    aliases: tuple[str, ...] = ()
    nav: bool = True               # in the header's navigation (a case's page is reached from a list)
    subpaths: bool = False         # also serves path/<anything> (the case page: /case/<number>)
    takes_params: bool = False     # its layout takes the URL's query parameters (`params=`): its initial choices
    order: int = 1000              # where it stands among the pages (navigation, the registry's links)
    section: str = ""              # pages linked together (the registry's: "registry")

    def serves(self, path: str | None) -> bool:
        return path == self.path or path in self.aliases or (
            self.subpaths and path is not None and path.startswith(self.path + "/"))

    @property
    def name(self) -> str:
        return f"the page {self.path}"


_PAGES: dict[str, Page] = {}


def page(path: str, label: Label, roles: frozenset[UserRole], layout: Callable[..., Any], **options) -> Page:
    """Declare a screen (its module calls this once, at import): the page, as the shell serves it."""
    declared = Page(path, label, frozenset(roles), layout, **options)
    known = _PAGES.get(path)
    if known is not None and known.layout.__module__ != layout.__module__:
        raise ValueError(f"{path} is declared twice: by {known.layout.__module__} and {layout.__module__}")
    _PAGES[path] = declared
    return declared


def pages() -> tuple[Page, ...]:
    """Every page of `dashboard/pages/`, in their order (the first is where a lost browser is shown)."""
    discover()
    return tuple(sorted(_PAGES.values(), key=lambda p: (p.order, p.path)))


def discover(package: str = PAGES_PACKAGE) -> None:
    """Import every module of the pages' package: each declares its page, callbacks and exports."""
    found = importlib.import_module(package)
    for module in pkgutil.iter_modules(found.__path__, f"{package}."):
        importlib.import_module(module.name)


def query_params(search: str | None) -> dict[str, str]:
    """A URL's query string (dcc.Location's `search`) as a dict, the first value of each key."""
    return {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}


# --- callbacks ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Callback:
    roles: frozenset[UserRole]
    why: str
    changes: tuple[Action, ...] = ()       # the data-changing actions it may perform
    clientside: bool = False
    module: str = ""                       # where it is defined


_CALLBACKS: dict[str, Callback] = {}


def callback(*dependencies, roles: frozenset[UserRole], why: str, changes: tuple[Action, ...] = (), **options):
    """Dash's `callback`, with who may run it (`roles`), why it exists and the actions it performs."""
    def register(function):
        registered = _registered(lambda: dash.callback(*dependencies, **options)(function))
        _declare(registered[0], Callback(frozenset(roles), why, tuple(changes), False, function.__module__))
        return registered[1]
    return register


def clientside_callback(function, *dependencies, roles: frozenset[UserRole], why: str, module: str = "",
                        **options) -> None:
    """Dash's `clientside_callback`, with the pages (roles) it serves; it runs in the browser."""
    key, _ = _registered(lambda: dash.clientside_callback(function, *dependencies, **options))
    _declare(key, Callback(frozenset(roles), why, (), True, module or sys._getframe(1).f_globals["__name__"]))


def _registered(register: Callable[[], Any]) -> tuple[str, Any]:
    """(the key Dash dispatches the callback on, what registering returned)."""
    before = len(GLOBAL_CALLBACK_LIST)
    returned = register()
    added = GLOBAL_CALLBACK_LIST[before:]
    if len(added) != 1:
        raise RuntimeError(f"expected Dash to register one callback, it registered {len(added)}")
    return added[0]["output"], returned


def _declare(key: str, declared: Callback) -> None:
    known = _CALLBACKS.get(key)
    if known is not None and known.module != declared.module:
        raise ValueError(f"the callback {key} is declared twice: in {known.module} and {declared.module}")
    _CALLBACKS[key] = declared


def callback_declared(key: str) -> Callback | None:
    """The declaration of the callback Dash dispatches on `key` (a request's `output`), or None."""
    return _CALLBACKS.get(key)


def callbacks() -> dict[str, Callback]:
    """Every declared callback, by the key Dash dispatches it on."""
    return dict(_CALLBACKS)


def output_ids(key: str) -> list[str]:
    """The component ids of a callback's outputs, from the key Dash dispatches it on
    ("..a.children...b.className.." or "a.children"; "a.data@<hash>" for an output that another
    callback shares; pattern ids are JSON)."""
    parts = [p for p in key.strip(".").split("...") if p]
    return [p.split("@", 1)[0].rsplit(".", 1)[0] for p in parts]


# --- routes ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    roles: frozenset[UserRole] | None      # None: public (no login)
    why: str

    @property
    def public(self) -> bool:
        return self.roles is None


PUBLIC = None


@dataclass(frozen=True)
class Export:
    """A page's download (a CSV, a PDF): a route the app registers, with who may use it."""
    path: str
    view: Callable[[], Any]
    route: Route


_EXPORTS: dict[str, Export] = {}


def declare_route(server: Flask, rule: str, roles: frozenset[UserRole] | None, why: str) -> None:
    """Say who may use a route of `server` (one that something else registers: Dash's own)."""
    server.extensions.setdefault(_ROUTES, {})[rule] = Route(None if roles is None else frozenset(roles), why)


def route(server: Flask, rule: str, roles: frozenset[UserRole] | None, why: str, **options):
    """Flask's `server.route`, with who may use it (`roles`; PUBLIC: no login)."""
    def register(view):
        declare_route(server, rule, roles, why)
        return server.route(rule, **options)(view)
    return register


def export(path: str, roles: frozenset[UserRole], why: str):
    """A page's download at `path` (a view of the page's module); the app registers it (`install_exports`)."""
    def declare(view):
        known = _EXPORTS.get(path)
        if known is not None and known.view.__module__ != view.__module__:
            raise ValueError(f"{path} is declared twice: by {known.view.__module__} and {view.__module__}")
        _EXPORTS[path] = Export(path, view, Route(frozenset(roles), why))
        return view
    return declare


def install_exports(server: Flask) -> None:
    """Register every page's downloads on `server` (the pages discovered first)."""
    discover()
    for found in _EXPORTS.values():
        declare_route(server, found.path, found.route.roles, found.route.why)
        server.add_url_rule(found.path, f"export:{found.path}", view_func=found.view)


def routes(server: Flask) -> dict[str, Route]:
    """Every declared route of `server`, by its rule."""
    return dict(server.extensions.get(_ROUTES, {}))
