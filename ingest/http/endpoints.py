"""The device endpoints, which know no server (they read a `Request`, answer a `Reply`):

- POST /owntracks, the OwnTracks app's HTTP mode: HTTP Basic auth with an enabled OwnTracks or
  terminal broker account, which may speak only for its own user;
- GET or POST /osmand/<token>, Traccar Client (the OsmAnd protocol): the token is the device's
  credential (its osmand broker account's password) and the request's id must be that device's.

A request enters the same chain as MQTT messages, and the answer is sent only after the commit
(OwnTracks: 200 with an empty JSON list, as the app expects; OsmAnd: 200 with an empty body, as
Traccar's server answers), so a phone keeps and resends what was not confirmed."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import orjson

from core.http import Later, Refused, Reply, Request, Route, refusal
from ingest.http.accounts import Logins
from ingest.http.source import HttpReply
from ingest.model import RATE_LIMITED, Delivery, Inbound, Rejection
from telemetry.decoders import osmand
from telemetry.topics import AccountKind, owntracks_device_topic

REPLY_TIMEOUT_S = 15.0
HTTP_KINDS = frozenset({AccountKind.OWNTRACKS, AccountKind.TERMINAL})   # who may post to /owntracks
OSMAND_KINDS = frozenset({AccountKind.OSMAND})                            # … and to /osmand/<token>


class DeviceEndpoints:
    """/owntracks and /osmand/<token>. `deliver` hands a delivery to the worker's chain (its
    source's inbox), which settles its receipt after the commit."""

    def __init__(self, logins: Logins, deliver: Callable[[Delivery], None]) -> None:
        self.logins, self.deliver = logins, deliver

    def routes(self) -> list[Route]:
        """The device-facing server's routes for these endpoints."""
        return [Route("POST", "/owntracks", self.route), Route("GET", f"/{osmand.PREFIX}/", self.route),
                Route("POST", f"/{osmand.PREFIX}/", self.route)]

    def route(self, request: Request) -> Reply | Later:
        try:
            if request.path.startswith(f"/{osmand.PREFIX}/"):
                return self.osmand(request)
            if request.method == "POST":
                return self.owntracks(request)
            return refusal(404, "not_found")
        except Refused as refused:
            return refused.reply

    def owntracks(self, request: Request) -> Reply | Later:
        if request.path.split("?")[0] != "/owntracks":
            return refusal(404, "not_found")
        user, why = self.logins.basic(request.headers.get("Authorization"), request.source, HTTP_KINDS)
        if user is None:
            code = 429 if why == "too_many_failed_logins" else 401
            return refusal(code, why, headers=[("WWW-Authenticate", 'Basic realm="owntracks"')])
        claimed = request.headers.get("X-Limit-U")
        if claimed and claimed != user:
            return refusal(403, "other_user")
        body = request.body()
        request.arrived()
        device = request.headers.get("X-Limit-D")
        inbound = Inbound(owntracks_device_topic(user, device=device or "http"), body, 0, False,
                          datetime.now(timezone.utc), http_identity=(user, device))
        return self._submit(inbound, Reply(200, b"[]"))

    def osmand(self, request: Request) -> Reply | Later:
        """Traccar Client's OsmAnd requests (telemetry.decoders.osmand), GET or POST."""
        path, _, query = request.path.partition("?")
        parts = path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != osmand.PREFIX or not parts[1]:
            return refusal(404, "not_found")
        body = b""
        if request.method == "POST" or request.headers.get("Content-Length") is not None:
            body = request.body()
        request.arrived()
        as_json = osmand.is_json(request.headers.get("Content-Type"))
        if as_json:
            device_id, payload = osmand.json_claimed_id(body), body
        else:
            params = osmand.form_parameters(query, body)
            device_id, payload = osmand.claimed_id(params), (query.encode() if query else body)
        if not device_id:
            return refusal(400, "no_device_id")
        user, why = self.logins.login(device_id, parts[1], request.source, OSMAND_KINDS)
        if user is None:
            return refusal(429 if why == "too_many_failed_logins" else 401, why)
        inbound = Inbound(osmand.topic(device_id, "json" if as_json else "form"), payload, 0, False,
                          datetime.now(timezone.utc), http_identity=(device_id, None))
        return self._submit(inbound, Reply(200, b"", "text/plain"))

    def _submit(self, inbound: Inbound, ok: Reply) -> Later:
        return submit(self.deliver, inbound, lambda rejection: ok if rejection is None else answer_rejection(rejection))


def submit(deliver: Callable[[Delivery], None], inbound: Inbound,
           answer: Callable[[Rejection | None], Reply]) -> Later:
    """Into the chain; the request is answered once it is committed (`answer(None)`) or refused
    (`answer(rejection)`), without a thread waiting: 503 not_stored_yet when that did not come in
    time, 503 shutting_down when the chain stopped first (the device sends again, the message's own
    id makes a repeat harmless)."""
    receipt = HttpReply()
    deliver(Delivery(inbound, receipt))

    def answered() -> Reply:
        if receipt.gone is not None:
            return refusal(503, receipt.gone, headers=(("Retry-After", "5"),))
        return answer(receipt.rejection)
    return Later(receipt.on_done, answered, REPLY_TIMEOUT_S,
                 refusal(503, "not_stored_yet", headers=(("Retry-After", "5"),)))


def answer_rejection(rejection: Rejection, with_detail: bool = False) -> Reply:
    """The answer to a message the chain refused: a phone sending too fast is told to slow down
    (429, Retry-After), not that it erred (400 with the reason, and its detail when `with_detail`)."""
    if rejection.reason == RATE_LIMITED:
        return refusal(429, RATE_LIMITED, headers=(("Retry-After", "10"),))
    if with_detail:
        return Reply(400, orjson.dumps({"error": rejection.reason, "detail": rejection.detail}),
                     refused=rejection.reason)
    return refusal(400, rejection.reason)
