"""What passes between the device-facing HTTP server and its endpoints, so the endpoints know no server:
a `Request` (what they read) and a `Reply` (what they answer, with the reason when it is a
refusal, which the server counts). `read_body` is the framing rule every body is read by."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import orjson

MAX_BODY = 64 * 1024
MAX_LENGTH_DIGITS = 9          # a Content-Length longer than this is too large anyway


class Headers(Protocol):
    def get(self, name: str, default: str | None = None) -> str | None: ...
    def get_all(self, name: str, default: list[str] | None = None) -> list[str] | None: ...


class Request(Protocol):
    """One device request as the endpoints see it. `source` is who sent it (behind a trusted
    proxy, the address it forwards for: core.throttle.Sources); `body()` reads the body
    by `read_body`'s rule or raises `Refused`; `arrived()` says the whole request is in (what
    remains, waiting for the commit, has its own bound)."""
    method: str
    path: str             # with its query
    headers: Headers
    source: str

    def body(self) -> bytes: ...
    def arrived(self) -> None: ...


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    refused: str | None = None     # a refusal's reason (counted by the server), None for an answer
    stream: AsyncIterator[bytes] | None = None   # a reply that stays open (server-sent events): `body`
    #                                              first, then each chunk as it comes, until it ends


@dataclass(frozen=True)
class Later:
    """An answer that waits on another thread (the ingest chain's commit): what an endpoint hands
    back instead of a Reply once its own work is done, so the server waits without holding one of
    its threads. `on_done(callback)` calls `callback` once, from any thread, when `answer()` is
    ready; `answer()` must not block (the server calls it on its event loop); `timed_out` is the
    answer when nothing came within `timeout_s`."""
    on_done: Callable[[Callable[[], None]], None]
    answer: Callable[[], Reply]
    timeout_s: float
    timed_out: Reply


@dataclass(frozen=True)
class Route:
    """One endpoint of the device-facing server: requests whose method is `method` and whose path
    (without its query) is `path`, or starts with it when it ends in "/", are answered by `respond`
    (a blocking function, run off the server's event loop: a Reply, or a Later to wait for); their
    body may be `max_body` bytes."""
    method: str
    path: str
    respond: Callable[[Request], Reply | Later]
    max_body: int = 64 * 1024


def refusal(status: int, reason: str, headers=()) -> Reply:
    """A refusal: its reason in the body (as JSON) and in `refused`."""
    return Reply(status, orjson.dumps({"error": reason}), headers=tuple(headers), refused=reason)


class Refused(Exception):
    """Raised where a request cannot go on (its body broke the framing rule); its reply says why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.refused)
        self.reply = reply


def read_body(headers: Headers, stream: BinaryIO) -> bytes:
    """The request body: it must say its length in ASCII digits (no chunked bodies), within
    MAX_BODY, and be that long; else `Refused` with why."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        raise Refused(refusal(411, "length_required"))
    raw = headers.get("Content-Length")
    digits = raw.strip() if raw is not None else None
    if digits is None or not (digits.isascii() and digits.isdigit()):   # "²".isdigit() is True
        raise Refused(refusal(411, "length_required") if raw is None else refusal(400, "bad_length"))
    if len(digits) > MAX_LENGTH_DIGITS or int(digits) > MAX_BODY:
        raise Refused(refusal(413, "payload_too_large"))
    length = int(digits)
    body = stream.read(length)
    if len(body) != length:
        raise Refused(refusal(400, "body_shorter_than_its_length"))
    return body
