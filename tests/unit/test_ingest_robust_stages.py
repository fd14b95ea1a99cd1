"""The chain's robustness, without servers: the per-device rate limit (a pure token bucket told
the time), its place first in the chain, and a stage that raises (a bug) costing only its own
message, as a `poison` dead letter."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from ingest.model import Inbound, poison
from ingest.stages import RateLimiter, Registry, process, process_batch, sending_device
from simulator.citygen import SCALES, generate

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def registry():
    return Registry(generate(SCALES["demo"], seed=7))


def _fix(registry, n: int, at: datetime = NOW, seconds_ago: int = 0, payload: bytes | None = None) -> Inbound:
    member = registry.city.members[n]
    p = registry.city.grid_by_code[member.grid_code].boundary.representative_point()
    body = payload or orjson.dumps({"ts": (at - timedelta(seconds=seconds_ago)).isoformat(), "lat": p.y, "lon": p.x})
    return Inbound(f"gcc/v1/terminal/{member.terminal_id}/fix", body, 1, False, at)


# --- the token bucket ------------------------------------------------------------------------------

def test_a_bucket_allows_its_burst_at_once_then_nothing_more():
    limiter = RateLimiter(rate_per_s=2, burst=5)
    assert [limiter.allow("T1", 100.0) for _ in range(7)] == [True] * 5 + [False] * 2


def test_a_bucket_refills_at_its_rate_and_never_beyond_its_burst():
    limiter = RateLimiter(rate_per_s=2, burst=5)
    for _ in range(5):
        limiter.allow("T1", 100.0)
    assert limiter.allow("T1", 100.5)          # half a second: one token back
    assert not limiter.allow("T1", 100.5)
    assert sum(limiter.allow("T1", 1000.0) for _ in range(10)) == 5   # long quiet: full again, not more


def test_devices_have_buckets_of_their_own():
    limiter = RateLimiter(rate_per_s=1, burst=1)
    assert limiter.allow("T1", 0.0) and not limiter.allow("T1", 0.0)
    assert limiter.allow("G1", 0.0)


def test_a_clock_that_goes_back_refills_nothing():
    limiter = RateLimiter(rate_per_s=10, burst=1)
    assert limiter.allow("T1", 100.0)
    assert not limiter.allow("T1", 50.0)
    assert not limiter.allow("T1", 100.05)     # still measured from 100.0, the latest time seen


def test_quiet_devices_are_forgotten_so_memory_follows_the_busy_ones():
    limiter = RateLimiter(rate_per_s=1, burst=3)
    for i in range(1000):
        limiter.allow(f"T{i}", 0.0)
    limiter.allow("busy", 0.0)
    limiter.allow("busy", 0.0)
    limiter.allow("busy", 0.0)
    assert len(limiter) == 1001
    limiter.allow("busy", RateLimiter.PRUNE_EVERY_S + 0.5)   # the others refilled: forgotten
    assert len(limiter) == 1


def test_a_limiter_needs_a_positive_rate_and_a_burst():
    with pytest.raises(ValueError):
        RateLimiter(0, 10)
    with pytest.raises(ValueError):
        RateLimiter(1, 0)


@pytest.mark.parametrize("topic, http, device", [
    ("gcc/v1/terminal/T0001/fix", None, "T0001"),
    ("gcc/v1/terminal/T0001/task/ack", None, "T0001"),
    ("gcc/v1/gateway/GW-7/senml", None, "GW-7"),
    ("owntracks/alice/phone", None, "alice"),
    ("owntracks/alice/phone/event", None, "alice"),
    ("owntracks/alice/http", ("alice", None), "alice"),
    ("something/else", None, None),
    ("gcc/v1/terminal", None, None),
])
def test_the_sending_device_is_the_one_the_topic_names(topic, http, device):
    assert sending_device(Inbound(topic, b"{}", 1, False, NOW, http_identity=http)) == device


# --- the rate limit as a stage ----------------------------------------------------------------------

def test_messages_beyond_a_devices_rate_are_rejected_as_rate_limited_and_others_pass(registry):
    limiter = RateLimiter(rate_per_s=1, burst=3)
    flood = [_fix(registry, 0, seconds_ago=i) for i in range(6)]
    quiet = _fix(registry, 1)
    outcomes = process_batch([*flood, quiet], registry, limiter)
    assert [o.rejection.reason if o.rejection else None for o in outcomes] == [None] * 3 + ["rate_limited"] * 3 + [None]
    assert registry.city.members[0].terminal_id in outcomes[3].rejection.detail


def test_the_rate_is_measured_by_reception_time_not_by_processing_time(registry):
    limiter = RateLimiter(rate_per_s=1, burst=1)
    spaced = [_fix(registry, 2, at=NOW + timedelta(seconds=i), seconds_ago=1) for i in range(5)]
    assert all(o.rejection is None for o in process_batch(spaced, registry, limiter))


def test_the_rate_limit_comes_first_so_a_flood_of_garbage_is_limited_too(registry):
    limiter = RateLimiter(rate_per_s=1, burst=2)
    garbage = [_fix(registry, 3, payload=b"{not json") for _ in range(4)]
    reasons = [o.rejection.reason for o in process_batch(garbage, registry, limiter)]
    assert reasons == ["invalid_json", "invalid_json", "rate_limited", "rate_limited"]


# --- a stage that raises -----------------------------------------------------------------------------

class _Breaks(dict):
    """A mapping that raises for one key: a bug in reference data, or in a stage that reads it."""

    def __init__(self, data, bad: str, on: str) -> None:
        super().__init__(data)
        self.bad, self.on = bad, on

    def __contains__(self, key):
        if self.on == "contains" and key == self.bad:
            raise RuntimeError(f"broken registry entry {key}")
        return super().__contains__(key)

    def __getitem__(self, key):
        if self.on == "getitem" and key == self.bad:
            raise ZeroDivisionError("bug in enrich")
        return super().__getitem__(key)


@pytest.mark.parametrize("on, where", [("contains", "validation"), ("getitem", "enrich")])
def test_a_stage_that_raises_costs_only_its_message_as_a_poison_dead_letter(registry, on, where):
    bad = registry.city.members[5].terminal_id
    broken = Registry(registry.city)
    broken.members = _Breaks(registry.members, bad, on)
    outcomes = process_batch([_fix(registry, 4), _fix(registry, 5), _fix(registry, 6)], broken)
    assert [bool(o.accepted) for o in outcomes] == [True, False, True]
    rejection = outcomes[1].rejection
    assert rejection.reason == "poison"
    assert rejection.detail.startswith(f"{where}: ")
    assert ("RuntimeError" if on == "contains" else "ZeroDivisionError") in rejection.detail
    assert process(_fix(registry, 5), broken).rejection.reason == "poison"


def test_a_failing_batch_lookup_of_grids_falls_back_to_one_lookup_per_message(registry):
    broken = Registry(registry.city)

    class Grids:
        def locate_many(self, lons, lats):
            raise MemoryError("vectorised lookup failed")

        def locate(self, lon, lat):
            return registry.grids.locate(lon, lat)

    broken.grids = Grids()
    outcomes = process_batch([_fix(registry, 7), _fix(registry, 8)], broken)
    assert [o.accepted[0].grid_code for o in outcomes] == [registry.city.members[i].grid_code for i in (7, 8)]


def test_a_poison_detail_names_the_exception_its_place_and_is_kept_short():
    try:
        raise ValueError("x" * 2000)
    except ValueError as exc:
        rejection = poison(exc, "store")
    assert rejection.reason == "poison"
    assert rejection.detail.startswith("store: ValueError at test_a_poison_detail")
    assert len(rejection.detail) <= 500
