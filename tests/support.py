"""What every test may share: waiting for something to become true (never a fixed sleep)."""
from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1,
             explain: Callable[[], str] = lambda: ""):
    """Poll `predicate` until it returns something truthy and return that; fail with `what`
    (and `explain()`, e.g. the state seen last) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} {explain()}".rstrip())
