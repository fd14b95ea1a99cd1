"""Process life cycle shared by the long-running commands (ingest workers, simulator, stack).

Stopping on SIGTERM/SIGINT: a Python signal handler runs in the middle of whatever the main thread
was doing; if it sets a threading.Event whose lock the interrupted code holds (Event.wait does),
the process deadlocks and never stops. So the signals are blocked in every thread and taken with
sigwait by the main thread, in ordinary code, while the work runs on a thread of its own.
"""
from __future__ import annotations

import os
import resource
import signal
import threading
from collections.abc import Callable

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def block_stop_signals() -> None:
    """Call first thing in main(), before any thread starts: threads inherit the mask."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def run_until_signalled(work: Callable[[], None], stop: threading.Event) -> int:
    """Run `work` on a thread; on SIGTERM or SIGINT set `stop` and wait for `work` to return.
    Returns 0, or 1 when `work` raised (the traceback is printed by the thread)."""
    block_stop_signals()
    failed = threading.Event()

    def guarded() -> None:
        try:
            work()
        except BaseException:
            failed.set()
            raise

    thread = threading.Thread(target=guarded, name="main-loop")
    thread.start()
    while thread.is_alive():
        if signal.sigtimedwait(STOP_SIGNALS, 0.5) is not None:
            stop.set()
    thread.join()
    return 1 if failed.is_set() else 0


def raise_open_file_limit(wanted: int = 65536) -> int:
    """Raise this process's open-file limit (inherited by what it starts): a broker or a simulator
    with tens of thousands of device connections needs one descriptor each. Returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, wanted if os.geteuid() == 0 else min(wanted, hard))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
