"""The ingest chain's source when it is fed only by the device-facing HTTP service (`python -m
ingest.http`): an inbox that the endpoints put deliveries into, each with a receipt (`HttpReply`)
that the waiting request is answered from once the worker settles it after the commit.

Beside ingest.mqtt_source.MqttSource, it has nothing to acknowledge to a broker: `connected` is
always set, `reconnect()` does nothing (a batch abandoned by the worker is never settled: its
requests are answered 503 not_stored_yet when their wait ends, and the phones send again), and
`stop()` refuses whatever is still waiting (503 shutting_down) so no request waits on a chain
that has gone."""
from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable

from ingest.model import Delivery, Rejection

SHUTTING_DOWN = "shutting_down"


class HttpReply:
    """The receipt of a device's HTTP request: its request waits (without a thread: `on_done`)
    until the worker settles it (after the commit, or with the message's rejection), or the source
    gives it up (`gone`: the chain stopped before it was stored)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.rejection: Rejection | None = None
        self.gone: str | None = None
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call `callback` once it is settled or given up (at once if it already is)."""
        with self._lock:
            if not self.done.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def _finish(self, rejection: Rejection | None, gone: str | None) -> None:
        with self._lock:
            if self.done.is_set():
                return
            self.rejection, self.gone = rejection, gone
            self.done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def settle(self, rejection: Rejection | None) -> bool:
        self._finish(rejection, None)
        return True

    def give_up(self, reason: str) -> None:
        self._finish(None, reason)


class HttpSource:
    """Deliveries from HTTP requests only (see the module's docstring)."""
    kind = "http"

    def __init__(self) -> None:
        self.inbox: queue.Queue[Delivery] = queue.Queue()
        self.connected = threading.Event()
        self.connected.set()                    # no broker link to lose
        self.qos0_inbox_limit = 0               # set by the worker; HTTP requests are never shed
        self.on_shed: Callable[[], None] = lambda: None
        self.reconnects = 0
        self._open = True
        self._lock = threading.Lock()
        self._waiting: weakref.WeakSet[HttpReply] = weakref.WeakSet()   # gone when their request is

    def deliver(self, delivery: Delivery) -> None:
        """Into the chain; a receipt the chain can no longer settle is given up at once."""
        receipt = delivery.receipt
        with self._lock:
            if not self._open:
                if isinstance(receipt, HttpReply):
                    receipt.give_up(SHUTTING_DOWN)
                return
            if isinstance(receipt, HttpReply):
                self._waiting.add(receipt)
        self.inbox.put(delivery)

    def start(self) -> None:
        with self._lock:
            self._open = True

    def reconnect(self) -> None:
        """Nothing to reconnect to (see the module's docstring)."""
        self.reconnects += 1

    def stop(self, end_session: bool = False) -> None:
        """Take nothing more; every request still waiting is answered 503 shutting_down."""
        with self._lock:
            self._open = False
            waiting, self._waiting = list(self._waiting), weakref.WeakSet()
        for receipt in waiting:
            receipt.give_up(SHUTTING_DOWN)
        while True:
            try:
                self.inbox.get_nowait()
            except queue.Empty:
                break
