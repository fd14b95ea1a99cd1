"""Live events to the screens through the Flask-SocketIO Redis message queue.

The ingest workers are write-only emitters: they never hold a socket. A batch's changes are
grouped by organization and sent once per room, for every level that contains them:
`org:city` (everything), `org:<district>`, `org:<street>`, `org:<community>`. The dashboard
server puts each screen into the room of the scope it is allowed to see.
"""
from __future__ import annotations

from collections import defaultdict

from flask_socketio import SocketIO

from ingest.live import Changes

CHANNEL = "gcc-live"
NAMESPACE = "/ingest"  # the dashboard server consumes these and sends coalesced frames on /live
EVENT = "changes"
CITY_ROOM = "org:city"


def rooms_for(grid_code: str | None) -> list[str]:
    """The rooms that see a change in this grid (changes with no grid go to the city room only)."""
    if not grid_code:
        return [CITY_ROOM]
    return [CITY_ROOM, f"org:{grid_code[:6]}", f"org:{grid_code[:9]}", f"org:{grid_code[:12]}"]


def group_by_room(changes: Changes) -> dict[str, dict[str, list[dict]]]:
    rooms: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for kind in ("fixes", "statuses", "readings", "alarms", "reports", "gateways"):
        for change in getattr(changes, kind):
            # a member's changes go to the rooms of the member's own grid (the screens' member lists),
            # wherever the member happens to be; everything else to the rooms of where it happened
            for room in rooms_for(change.get("home") or change.get("grid")):
                rooms[room][kind].append(change)
    return {room: dict(kinds) for room, kinds in rooms.items()}


class LiveEmitter:
    def __init__(self, redis_url: str) -> None:
        self.socketio = SocketIO(message_queue=redis_url, channel=CHANNEL)

    def emit(self, changes: Changes) -> int:
        """Send the changes; returns how many room messages went out."""
        if not changes:
            return 0
        grouped = group_by_room(changes)
        for room, payload in grouped.items():
            self.socketio.emit(EVENT, payload, to=room, namespace=NAMESPACE)
        return len(grouped)
