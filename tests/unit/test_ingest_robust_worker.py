"""The worker's robustness, without servers: bisection of a refused batch (how many attempts it
costs, what it retries), the stall clock behind /healthz, and where its settings come from."""
from __future__ import annotations

import math

from config.settings import Settings
from ingest.metrics import Progress, assess
from ingest.store import bisect_failures
from ingest.worker import WorkerConfig


class Refused(Exception):
    pass


def _attempts_against(bad: set[int], flaky: dict[int, int] | None = None):
    """An attempt that fails while its part holds a bad item (or a flaky one, its first n times)."""
    flaky = dict(flaky or {})
    log: list[list[int]] = []

    def attempt(part: list[int]):
        log.append(part)
        for item in part:
            if item in bad:
                return Refused(f"item {item}")
            if flaky.get(item, 0) > 0:
                flaky[item] -= 1
                return RuntimeError(f"passing trouble with {item}")
        return None

    return attempt, log


def test_one_bad_item_among_2000_costs_about_2_log2_attempts_and_is_found():
    attempt, log = _attempts_against({1234})
    failed = bisect_failures(list(range(2000)), Refused("whole batch"), attempt, lambda _: 1)
    assert [item for item, _ in failed] == [1234]
    assert str(failed[0][1]) == "item 1234"
    assert len(log) <= 2 * math.ceil(math.log2(2000))       # 22, not 2,000
    committed = sorted(i for part in log if 1234 not in part for i in part)
    assert committed == [i for i in range(2000) if i != 1234]   # every good item attempted once, successfully


def test_several_bad_items_are_each_found_and_every_good_one_gets_through():
    bad = {0, 999, 1999}
    attempt, log = _attempts_against(bad)
    failed = bisect_failures(list(range(2000)), Refused("whole"), attempt, lambda _: 1)
    assert sorted(item for item, _ in failed) == sorted(bad)
    good = {i for part in log if not bad & set(part) for i in part}
    assert good == set(range(2000)) - bad


def test_a_deterministic_refusal_is_not_retried_alone():
    attempt, log = _attempts_against({3})
    bisect_failures([3], Refused("alone"), attempt, lambda _: 1)
    assert log == []


def test_an_exception_alone_is_tried_up_to_n_times_then_given_up():
    attempt, log = _attempts_against({7})
    failed = bisect_failures([7], RuntimeError("bug"), attempt, lambda _: 3)
    assert [item for item, _ in failed] == [7]
    assert log == [[7], [7]]          # 3 failures alone in all: the one given, and two more


def test_a_passing_exception_is_not_a_poison_message():
    attempt, log = _attempts_against(set(), flaky={5: 2})
    failed = bisect_failures(list(range(8)), RuntimeError("whole"), attempt, lambda _: 3)
    assert failed == []


def test_a_stalled_worker_is_one_with_work_that_neither_committed_nor_idled_for_a_while():
    now = [100.0]
    progress = Progress(clock=lambda: now[0])
    now[0] = 150.0
    assert progress.stalled_for(pending=0) == 0.0          # nothing waiting: never stalled
    assert progress.stalled_for(pending=3) == 50.0         # since the start
    progress.idle()
    now[0] = 160.0
    assert progress.stalled_for(pending=3) == 10.0         # since it last had nothing to do
    progress.committed()
    now[0] = 161.5
    assert progress.stalled_for(pending=3) == 1.5
    assert progress.since_commit() == 1.5


def test_seconds_since_commit_count_from_the_start_before_the_first_commit():
    now = [10.0]
    progress = Progress(clock=lambda: now[0])
    now[0] = 12.5
    assert progress.since_commit() == 2.5


def test_a_worker_built_without_settings_has_the_settings_defaults():
    assert WorkerConfig() == WorkerConfig.from_settings(Settings(_env_file=None))


def test_the_settings_reach_the_worker():
    settings = Settings(_env_file=None, ingest_stall_after_s=5, ingest_device_rate_per_s=0, ingest_device_burst=9,
                        ingest_qos0_inbox_limit=7)
    config = WorkerConfig.from_settings(settings)
    assert (config.stall_after_s, config.device_rate_per_s, config.device_burst, config.qos0_inbox_limit) == \
           (5, 0, 9, 7)


def _assess(**changes):
    values = {"broker_up": True, "pending": 0, "stalled_for": 0.0, "since_commit": 0.5, "stall_after_s": 30.0,
              "loop_ended": False, **changes}
    return assess(**values)


def test_a_working_worker_is_healthy_and_says_how_long_since_it_committed():
    ok, detail = _assess(since_commit=0.46)
    assert ok and detail == {"broker": "up", "pending": 0, "seconds_since_commit": 0.5, "stall_after_s": 30.0,
                             "live": "ok"}


def test_an_idle_worker_is_healthy_however_long_ago_it_committed():
    assert _assess(since_commit=86_400.0)[0]


def test_a_worker_with_messages_waiting_and_no_commit_beyond_the_limit_is_unhealthy_and_says_why():
    ok, detail = _assess(pending=120, stalled_for=31.0, since_commit=31.0)
    assert not ok
    assert detail["reason"] == "120 messages waiting and no commit for 31 s (more than 30 s)"


def test_a_worker_without_its_broker_or_its_loop_is_unhealthy():
    assert _assess(broker_up=False)[1]["reason"] == "the broker link is down"
    assert _assess(loop_ended=True)[1]["reason"] == "the worker's loop has ended"
