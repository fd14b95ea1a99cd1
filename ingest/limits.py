"""How much a device may send, and how much of its refusals is kept. Pure: no clock of their own
(each call is told the time), no I/O.

- `RateLimiter`: a token bucket per device (every message of a device counts);
- `Budgets`: tighter buckets for the message kinds that live long on the screens and in Redis, per
  sending device: a terminal's incident reports, a gateway's alarms;
- `RefusalDigest`: per device, the first refusal of a kind in a window becomes a dead letter; later
  ones in that window are acknowledged and only counted, and the count rides on that device's next
  dead letter of that kind ("N more since <time>"), so a flood cannot fill the dead letters.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ingest.model import Rejection
from telemetry import topics


class _Every:
    """Due once every `seconds` of the caller's clock (its first look starts it). `next_at` is
    when it is next due, for a caller that looks at every message: a comparison, not a call."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: float | None = None
        self.next_at = float("-inf")

    def due(self, now: float) -> bool:
        if self._last is None:
            self._last = now
        if now - self._last < self.seconds:
            self.next_at = self._last + self.seconds
            return False
        self._last = now
        self.next_at = now + self.seconds
        return True


class RateLimiter:
    """A token bucket per sending device: `rate_per_s` messages a second on average, bursts of up
    to `burst`. Devices whose bucket has filled up again are forgotten now and then, so memory
    follows the devices that are busy."""

    PRUNE_EVERY_S = 60.0

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate_per_s > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate_per_s, self.burst = rate_per_s, burst
        self._buckets: dict[str, tuple[float, float]] = {}   # device -> (tokens, at)
        self._prune_clock = _Every(self.PRUNE_EVERY_S)

    def allow(self, device: str, now: float) -> bool:
        """Take one token from the device's bucket at time `now` (seconds); False when it is empty.
        A clock that went back refills nothing."""
        tokens, at = self._buckets.get(device, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate_per_s)
        allowed = tokens >= 1
        self._buckets[device] = (tokens - 1 if allowed else tokens, max(at, now))
        if now >= self._prune_clock.next_at:
            self._prune(now)
        return allowed

    def _prune(self, now: float) -> None:
        if not self._prune_clock.due(now):
            return
        full = [d for d, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate_per_s >= self.burst]
        for device in full:
            del self._buckets[device]

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True)
class Budget:
    """A tighter bucket for one message kind, by the topic it comes on: (sender kind, leaf), e.g.
    ("terminal", "incident"); `what` names it in the dead letter's detail."""
    sender: str
    leaf: str
    what: str
    limiter: RateLimiter
    settings: str = ""             # the settings that set it, for whoever reads the dead letter

    def describe(self, device: str) -> str:
        per_min = self.limiter.rate_per_s * 60
        return (f"{self.sender} {device!r} sends {self.what} faster than {per_min:g} a minute "
                f"(bursts of {self.limiter.burst:g})" + (f", set by {self.settings}" if self.settings else ""))


class Budgets:
    """The per-kind budgets, found by the topic's (sender kind, leaf)."""

    def __init__(self, budgets: list[Budget]) -> None:
        self._by_topic = {(b.sender, b.leaf): b for b in budgets}

    @classmethod
    def of(cls, reports_per_min: float, report_burst: int, alarms_per_min: float, alarm_burst: int) -> Budgets:
        """A terminal's incident reports and a gateway's alarms (0 a minute: no budget)."""
        budgets = []
        if reports_per_min > 0:
            budgets.append(Budget("terminal", topics.INCIDENT, "incident reports",
                                  RateLimiter(reports_per_min / 60, report_burst),
                                  "GCC_INGEST_REPORT_RATE_PER_MIN and GCC_INGEST_REPORT_BURST"))
        if alarms_per_min > 0:
            budgets.append(Budget("gateway", topics.ALARM, "alarms", RateLimiter(alarms_per_min / 60, alarm_burst),
                                  "GCC_INGEST_ALARM_RATE_PER_MIN and GCC_INGEST_ALARM_BURST"))
        return cls(budgets)

    def refusal(self, sender: str, leaf: str, device: str, now: float) -> str | None:
        """Why the message is refused (its budget is spent), or None."""
        budget = self._by_topic.get((sender, leaf))
        if budget is None or budget.limiter.allow(device, now):
            return None
        return budget.describe(device)


@dataclass
class _Digest:
    written_at: float            # when this device's last dead letter of the reason was written
    suppressed: int = 0          # refusals since then that were only counted


class RefusalDigest:
    """Per device and reason, at most one dead letter per `window_s`: the first refusal in a window
    is written; the later ones are only counted (`admit` returns None), and the next one written
    says how many there were: "(N more since <time of the previous dead letter>)". Memory: one
    entry per device refused lately; entries with nothing to carry are forgotten after the window,
    the others after `forget_after_s`."""

    PRUNE_EVERY_S = 60.0

    def __init__(self, window_s: float = 60.0, forget_after_s: float = 86400.0) -> None:
        self.window_s, self.forget_after_s = window_s, forget_after_s
        self._digests: dict[tuple[str, str], _Digest] = {}
        self._prune_clock = _Every(self.PRUNE_EVERY_S)

    def admit(self, device: str, rejection: Rejection, now: float) -> Rejection | None:
        """The rejection to dead-letter (with the count carried), or None: acknowledge and count it."""
        key = (device, rejection.reason)
        digest = self._digests.get(key)
        self._prune(now)
        if digest is not None and now - digest.written_at < self.window_s:
            digest.suppressed += 1
            return None
        self._digests[key] = _Digest(now)
        if digest is None or digest.suppressed == 0:
            return rejection
        since = datetime.fromtimestamp(digest.written_at, timezone.utc).isoformat(timespec="seconds")
        return Rejection(rejection.reason, f"{rejection.detail} ({digest.suppressed} more since {since}, "
                                           "acknowledged and counted without a dead letter each)")

    def _prune(self, now: float) -> None:
        if not self._prune_clock.due(now):
            return
        stale = [k for k, d in self._digests.items()
                 if now - d.written_at >= (self.forget_after_s if d.suppressed else self.window_s)]
        for key in stale:
            del self._digests[key]

    def __len__(self) -> int:
        return len(self._digests)
