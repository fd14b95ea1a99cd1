"""The ingest worker's Prometheus metrics (served at /metrics by http.py)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, worker: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"worker": worker}
        r = self.registry
        self.received = Counter("gcc_ingest_received", "messages received from the broker (and HTTP)",
                                ["worker"], registry=r).labels(**labels)
        self.stored = Counter("gcc_ingest_stored_rows", "rows committed, by table", ["worker", "table"], registry=r)
        self.duplicates = Counter("gcc_ingest_duplicates", "rows skipped as already stored (redeliveries)",
                                  ["worker"], registry=r).labels(**labels)
        self.dead_letters = Counter("gcc_ingest_dead_letters", "messages dead-lettered, by reason",
                                    ["worker", "reason"], registry=r)
        self.redeliveries = Counter("gcc_ingest_redeliveries", "messages the broker delivered again (DUP)",
                                    ["worker"], registry=r).labels(**labels)
        self.acked = Counter("gcc_ingest_acked", "messages acknowledged to the broker after commit",
                             ["worker"], registry=r).labels(**labels)
        self.db_retries = Counter("gcc_ingest_db_temporary_errors", "batches retried after a temporary "
                                  "database error", ["worker"], registry=r).labels(**labels)
        self.live_errors = Counter("gcc_ingest_live_errors", "live-state or live-event updates that failed",
                                   ["worker"], registry=r).labels(**labels)
        self.events = Counter("gcc_ingest_live_events",
                              "entries put on the live bus (one per batch that changed something)",
                              ["worker"], registry=r).labels(**labels)
        self.batch_size = Histogram("gcc_ingest_batch_size", "messages per committed batch", ["worker"],
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000), registry=r).labels(**labels)
        self.commit_seconds = Histogram("gcc_ingest_commit_seconds", "time to commit one batch", ["worker"],
                                        buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5),
                                        registry=r).labels(**labels)
        self.in_flight = Gauge("gcc_ingest_in_flight", "messages received and not yet acknowledged",
                               ["worker"], registry=r).labels(**labels)
        self.worker = worker

    def stored_rows(self, table: str, count: int) -> None:
        self.stored.labels(worker=self.worker, table=table).inc(count)

    def dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(worker=self.worker, reason=reason).inc()
