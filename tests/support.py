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
