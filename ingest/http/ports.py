"""The ingest worker's HTTP sides, on two ports (bounded servers: ingest.http.server):

- the device-facing one: the device endpoints (ingest.http.endpoints: /owntracks, /osmand/<token>),
  their logins throttled (core.throttle), each refusal counted by its reason;
- the internal one: GET /metrics (Prometheus) and GET /healthz, never reachable from devices."""
from __future__ import annotations

import threading
from pathlib import Path

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from core.http import Reply
from core.throttle import Sources
from ingest.http.accounts import BrokerAccounts, Logins
from ingest.http.endpoints import DeviceEndpoints
from ingest.http.server import (
    CONNECTIONS_PER_SOURCE,
    MAX_HANDLERS,
    BoundedServer,
    HandlerRequest,
    RequestHandler,
    serving,
)
from ingest.worker import Worker


class IngestHTTP:
    def __init__(self, worker: Worker, host: str, port: int, credentials_file: Path | None,
                 metrics_port: int = 0, trusted_proxies: tuple[str, ...] = ()) -> None:
        self.worker = worker
        self.sources = Sources(trusted_proxies)
        self.logins = Logins(BrokerAccounts(credentials_file))
        self.endpoints = DeviceEndpoints(self.logins, worker.source.inbox.put)
        registry = worker.metrics.registry
        self.refused = Counter("gcc_ingest_http_refused", "OwnTracks HTTP requests refused, by reason",
                               ["worker", "reason"], registry=registry)
        self.servers = [BoundedServer((host, port), serving(self._device, ("GET", "POST")), MAX_HANDLERS,
                                      CONNECTIONS_PER_SOURCE, self.sources.trusted),
                        BoundedServer(("127.0.0.1", metrics_port), serving(self._internal, ("GET",)), 8)]
        self.threads = [threading.Thread(target=s.serve_forever, name="ingest-http", daemon=True) for s in self.servers]

    @property
    def port(self) -> int:
        """The device-facing port (OwnTracks, OsmAnd)."""
        return self.servers[0].server_address[1]

    @property
    def metrics_port(self) -> int:
        return self.servers[1].server_address[1]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def _device(self, handler: RequestHandler) -> Reply:
        source = self.sources.source(handler.client_address[0], handler.headers.get_all("X-Forwarded-For"))
        reply = self.endpoints.route(HandlerRequest(handler, source))
        if reply.refused is not None:
            self.refused.labels(worker=self.worker.name, reason=reply.refused).inc()
        return reply

    def _internal(self, handler: RequestHandler) -> Reply:
        if handler.path == "/metrics":
            return Reply(200, generate_latest(self.worker.metrics.registry), CONTENT_TYPE_LATEST)
        if handler.path == "/healthz":
            ok, detail = self.worker.health()
            return Reply(200 if ok else 503, orjson.dumps(detail))
        return Reply(404, b'{"error": "not found"}')
