"""What every test may share: waiting for something to become true (never a fixed sleep), and a
clock a test moves forward where time must pass (cases.offers.Clock)."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1,
             explain: Callable[[], str] = lambda: ""):
    """Poll `predicate` until it returns something truthy and return that; fail with `what`
    (and `explain()`, e.g. the state seen last) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)    # a poll, for a condition in another process that signals nothing
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} {explain()}".rstrip())


class MovedClock:
    """The real time plus what a test has moved it on by: pass it as a `clock` (cases.offers.Clock)
    and call `advance` instead of waiting the time out. It stays ahead of the wall clock, so what
    the rest of the stack stamps with the real time is never later than what it stamps."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.ahead

    def advance(self, seconds: float) -> None:
        self.ahead += timedelta(seconds=seconds)


class EndpointHeaders(dict):
    """A request's headers as an endpoint reads them (core.http.Headers): names in any case."""

    def get(self, name: str, default: str | None = None) -> str | None:
        return next((value for key, value in self.items() if key.lower() == name.lower()), default)

    def get_all(self, name: str, default: list[str] | None = None) -> list[str] | None:
        value = self.get(name)
        return [value] if value is not None else default


class EndpointRequest:
    """A small real request, as the device-facing server hands one to an endpoint (core.http.Request):
    for tests that call an endpoint's function directly, without the server."""

    def __init__(self, method: str, path: str, headers: dict | None = None, raw: bytes = b"",
                 source: str = "192.0.2.7") -> None:
        self.method, self.path, self.source, self.raw = method, path, source, raw
        self.headers = EndpointHeaders(headers or {})

    def body(self) -> bytes:
        return self.raw

    def arrived(self) -> None:
        pass
