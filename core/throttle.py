"""Login attempts at the device-facing endpoints (the ingest's and the handheld's), slowed down
instead of locked out (`LoginThrottle`), and who an attempt comes from (`Sources`: the socket's
address, or what a trusted proxy forwards for)."""
from __future__ import annotations

import ipaddress
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

FAILURES_PER_PAIR = 5          # free login attempts of one username from one source, then ...
PAIR_DELAY_S = 30.0            # ... a wait before the next, doubled after each, ...
PAIR_DELAY_MAX_S = 900.0       # ... up to this; a pair with no attempt for PAIR_FORGET_S starts over
PAIR_FORGET_S = 3600.0
FAILURES_PER_SOURCE = 20       # attempts from one source (any usernames) within FAILURE_WINDOW_S
FAILURES_PER_USERNAME = 100    # attempts at one username from all sources within FAILURE_WINDOW_S, past
KNOWN_SOURCE_S = 7 * 86400.0   # which only the sources it logged in from this lately get through
FAILURE_WINDOW_S = 300.0
THROTTLE_KEYS = 100_000        # remembered pairs, sources, usernames; past it the quiet ones are forgotten


@dataclass(frozen=True)
class ThrottlePolicy:
    per_pair: int = FAILURES_PER_PAIR
    pair_delay_s: float = PAIR_DELAY_S
    pair_delay_max_s: float = PAIR_DELAY_MAX_S
    pair_forget_s: float = PAIR_FORGET_S
    per_source: int = FAILURES_PER_SOURCE
    per_username: int = FAILURES_PER_USERNAME
    known_source_s: float = KNOWN_SOURCE_S
    window_s: float = FAILURE_WINDOW_S


@dataclass
class _Pair:
    attempts: int
    last: float
    wait_until: float


class LoginThrottle:
    """Login attempts, counted before the password is checked (`reserve`, under one lock: guesses
    sent at once cannot outrun a budget), a success giving its count back (`succeeded`). The rule
    is the dashboard's (dashboard.accounts.reserve), kept in memory here:

    - a (username, source) pair: the phone with a stale password, or one guesser at one account.
      `per_pair` attempts are free; from then on each sets a wait before the next (`pair_delay_s`,
      doubled each time, at most `pair_delay_max_s`); a success or `pair_forget_s` of quiet starts
      it over. It slows down only that source for that username.
    - a source: one guesser trying many usernames: `per_source` attempts a `window_s`.
    - a username: guesses spread over many sources (or a shared proxy): `per_username` a window,
      past which only sources it logged in from within `known_source_s` get through, so guesses
      from elsewhere never lock a phone out of where it posts (a guesser behind the same carrier
      address still spends that source's budget).
    A refused attempt is not counted and sets no longer wait. Every username is throttled alike,
    whether or not it exists. `clock` is injected (monotonic seconds)."""

    def __init__(self, policy: ThrottlePolicy | None = None, clock=time.monotonic) -> None:
        self.policy, self.clock = policy or ThrottlePolicy(), clock
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._sources: dict[str, deque] = defaultdict(deque)
        self._users: dict[str, deque] = defaultdict(deque)
        self._known: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def reserve(self, user: str, source: str) -> str | None:
        """None: the attempt is counted and may be checked; else which budget refuses it
        ("pair", "source" or "username")."""
        policy = self.policy
        with self._lock:
            now = self.clock()
            pair = self._pairs.get((user, source))
            if pair is not None and now - pair.last >= policy.pair_forget_s and pair.wait_until <= now:
                pair = None
            if pair is not None and pair.wait_until > now:
                return "pair"
            sources = self._recent(self._sources, source, now)
            if len(sources) >= policy.per_source:   # refused before a username's entry is made: a source
                return "source"                     # past its budget adds nothing, whatever it sends
            users = self._recent(self._users, user, now)
            known = self._known.get((user, source))
            if len(users) >= policy.per_username and (known is None or now - known > policy.known_source_s):
                return "username"
            counted = (pair.attempts if pair is not None else 0) + 1
            wait_until = now
            if counted >= policy.per_pair:
                doublings = min(counted - policy.per_pair, 30)
                wait_until = now + min(policy.pair_delay_s * 2 ** doublings, policy.pair_delay_max_s)
            self._pairs[(user, source)] = _Pair(counted, now, wait_until)
            sources.append(now)
            users.append(now)
            self._bound(now)
            return None

    def succeeded(self, user: str, source: str) -> None:
        """The attempt reserved for (user, source) was right: the pair starts over, the source and
        the username get their count back, and the source is one of the username's own."""
        with self._lock:
            self._pairs.pop((user, source), None)
            for counts, key in ((self._sources, source), (self._users, user)):
                if counts.get(key):
                    counts[key].pop()
            self._known[(user, source)] = self.clock()

    def _recent(self, counts: dict[str, deque], key: str, now: float) -> deque:
        times, cutoff = counts[key], now - self.policy.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        return times

    def _bound(self, now: float) -> None:
        """At most THROTTLE_KEYS of each kind: the quiet ones forgotten first, then the oldest."""
        policy = self.policy
        for table, quiet, last in (
                (self._pairs, lambda p: now - p.last >= policy.pair_forget_s and p.wait_until <= now, lambda p: p.last),
                (self._sources, lambda d: not d or d[-1] <= now - policy.window_s, lambda d: d[-1] if d else 0.0),
                (self._users, lambda d: not d or d[-1] <= now - policy.window_s, lambda d: d[-1] if d else 0.0),
                (self._known, lambda t: now - t > policy.known_source_s, lambda t: t)):
            if len(table) <= THROTTLE_KEYS:
                continue
            for key in [k for k, v in table.items() if quiet(v)]:
                del table[key]
            if len(table) > THROTTLE_KEYS // 2:      # (so the next scan is many attempts away)
                for key in sorted(table, key=lambda k: last(table[k]))[:len(table) - THROTTLE_KEYS // 2]:
                    del table[key]


class Sources:
    """Who a request comes from: the socket's address, or, when that is a trusted reverse proxy,
    the last address in X-Forwarded-For that is not itself a trusted proxy (what the proxy saw;
    what a client wrote before it is not believed)."""

    def __init__(self, trusted: tuple[str, ...] = ()) -> None:
        self.networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def source(self, address: str, forwarded_for: list[str] | None) -> str:
        if not forwarded_for or not self.trusted(address):
            return address
        hops = [hop.strip() for line in forwarded_for for hop in line.split(",") if hop.strip()]
        return next((hop for hop in reversed(hops) if not self.trusted(hop)), hops[0] if hops else address)
