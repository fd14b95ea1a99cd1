"""The handheld's uplinks (docs/HANDHELD_API.md, "Uplinks"): `POST /handheld/api/v1/messages/{leaf}`
with the body of docs/WIRE_FORMAT.md for a terminal topic's leaf (fix, status, incident, task/ack,
case, announcement/read, diary, alarm/check; any other leaf: 404).

The signed-in phone speaks as its member's terminal: the server makes the topic
(`gcc/v1/terminal/{caller.terminal_id}/{leaf}`; the body never names a terminal) and keeps which
phone sent it (the Inbound's http_identity: (device id, None)). The message goes through the same
chain as over MQTT (decode, validate, the terminal's budgets, store) and is answered only after the
commit: 200 {"stored": true}; 400 {"error": reason, "detail": …} with the chain's rejection (a
dead letter); 429 rate_limited with Retry-After; 503 not_stored_yet when the commit did not come
in time (the message's own id makes sending it again harmless: a repeat is a duplicate).

Who the caller is, is `authenticate(request) -> Caller`'s to say (the handheld's sessions), which
raises core.http.Refused (401 no_session / bad_session, 403 revoked_device) for anyone else."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import orjson

from core.http import Later, Reply, Request, Route, refusal
from handheld.caller import Caller
from ingest.http.endpoints import answer_rejection, submit
from ingest.model import Delivery, Inbound
from telemetry.topics import TERMINAL_UPLINK, terminal_topic

API = "/handheld/api/v1"
MESSAGES = f"{API}/messages/"
STORED = orjson.dumps({"stored": True})


class HandheldUplinks:
    def __init__(self, deliver: Callable[[Delivery], None], authenticate: Callable[[Request], Caller]) -> None:
        self.deliver, self.authenticate = deliver, authenticate

    def post(self, request: Request) -> Reply | Later:
        caller = self.authenticate(request)          # Refused: answered by the server as it is
        leaf = request.path.split("?", 1)[0][len(MESSAGES):]
        if leaf not in TERMINAL_UPLINK:
            return refusal(404, "not_found")
        inbound = Inbound(terminal_topic(caller.terminal_id, leaf), request.body(), 1, False,
                          datetime.now(timezone.utc), http_identity=(caller.device_id, None))
        return submit(self.deliver, inbound, lambda rejection: Reply(200, STORED) if rejection is None
                      else answer_rejection(rejection, with_detail=True))


def uplink_routes(deliver: Callable[[Delivery], None], authenticate: Callable[[Request], Caller]) -> list[Route]:
    """The device-facing server's routes for the handheld's uplinks (bodies ≤ 64 KB)."""
    return [Route("POST", MESSAGES, HandheldUplinks(deliver, authenticate).post)]
