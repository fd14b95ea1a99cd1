"""A live page's parts in the browser, the same on every live page: its socket (its feed at a scope
the hub authorizes: the hub decides the room, the browser only asks), the badge that says whether
it is live, and the clientside callbacks that take the socket's snapshots and frames.

Component ids follow the page's prefix: `<prefix>-socket`, `<prefix>-conn`."""
from __future__ import annotations

from dash import ClientsideFunction, Input, Output, State, html
from dash_socketio import DashSocketIO

from core.roles import UserRole
from dashboard.declarations import clientside_callback
from dashboard.feeds import Feed


def socket(prefix: str, feed: Feed, scope_code: str, events: tuple[str, ...] = ("snapshot", "frame")) -> DashSocketIO:
    """The page's socket: `feed` at `scope_code` (in the URL too: a new scope is a new URL, so the
    component opens a new socket)."""
    return DashSocketIO(id=f"{prefix}-socket", url=f"/live?feed={feed.name}&scope={scope_code}",
                        eventNames=list(events),
                        options={"transports": ["websocket"], "auth": {"feed": feed.name, "scope": scope_code}})


def badge(prefix: str) -> html.Span:
    """"live" or "reconnecting…", kept by `show_connection`."""
    return html.Span("connecting…", id=f"{prefix}-conn", className="wall-conn down")


def show_connection(prefix: str, roles: frozenset[UserRole]) -> None:
    """The badge follows the socket (assets/live.js: a lost connection whose session ended says so)."""
    clientside_callback(
        ClientsideFunction(namespace="gcc", function_name="connection"),
        Output(f"{prefix}-conn", "children"), Output(f"{prefix}-conn", "className"),
        Input(f"{prefix}-socket", "connected"),
        roles=roles, why="connection state",
    )


def follow_frames(prefix: str, renderer: str, bumped: Output, roles: frozenset[UserRole]) -> None:
    """A page whose server draws what changed: the renderer (a `gcc` clientside function, given the
    snapshot, the frame and the socket's URL) bumps `bumped` when a frame names what the page shows,
    and gives the socket a new URL to resync; and the badge follows the socket."""
    clientside_callback(
        ClientsideFunction(namespace="gcc", function_name=renderer),
        bumped, Output(f"{prefix}-socket", "url"),
        Input(f"{prefix}-socket", "data-snapshot"), Input(f"{prefix}-socket", "data-frame"),
        State(f"{prefix}-socket", "url"),
        prevent_initial_call=True,
        roles=roles, why="the page's live pushes (which of what it shows changed)",
    )
    show_connection(prefix, roles)
