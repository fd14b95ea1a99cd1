"""The screens. One module per screen: its layout is a function, its callbacks are registered with
dash.callback, its component ids start with the screen's name, and it declares itself in `PAGE`
(path, label, who may open it, its live feed). The shell builds routes and navigation from these
declarations alone."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from core.catalogue import Label
from core.roles import UserRole
from dashboard.feeds import Feed


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

    def serves(self, path: str | None) -> bool:
        return path == self.path or path in self.aliases or (
            self.subpaths and path is not None and path.startswith(self.path + "/"))

    @property
    def name(self) -> str:
        return f"the page {self.path}"


def query_params(search: str | None) -> dict[str, str]:
    """A URL's query string (dcc.Location's `search`) as a dict, the first value of each key."""
    return {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}


def declared() -> tuple[Page, ...]:
    """Every page, in navigation order."""
    from dashboard.pages import (
        admin,
        announcements,
        audit,
        boundaries,
        case,
        cases,
        devices,
        dispatch,
        gateways,
        kpis,
        members,
        replay,
        rules,
        wall,
    )

    return (wall.PAGE, dispatch.PAGE, cases.PAGE, announcements.PAGE, kpis.PAGE, replay.PAGE, audit.PAGE, admin.PAGE,
            case.PAGE, rules.PAGE, devices.PAGE, members.PAGE, gateways.PAGE, boundaries.PAGE)
