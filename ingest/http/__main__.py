"""`python -m ingest.http`: the device-facing HTTP service (OwnTracks, Traccar Client's OsmAnd, the
members' handheld), on gunicorn's native ASGI worker.

A gunicorn application configured in code from config.settings: GCC_INGEST_HTTP_HOST and _PORT,
GCC_INGEST_HTTP_WORKERS processes, each running its own ingest chain (ingest.http.app) with its
/metrics and /healthz on 127.0.0.1 (GCC_INGEST_HTTP_METRICS_PORT and up). A connection is kept
open GCC_INGEST_HTTP_KEEPALIVE_S (30) for its next request, so a patrolling phone's fix every 10 s
costs no new connection (each request still has the guard's deadline: ingest.http.protocol);
SIGTERM stops it gracefully: open requests are answered, then each chain finishes its batch."""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from gunicorn.app.base import BaseApplication

from config.settings import load_settings
from core.http import Route
from handheld.api import Handheld
from ingest.http.app import Deliver, build_app
from ingest.http.handheld import uplink_routes

log = logging.getLogger("ingest.http")


def extra_routes(deliver: Deliver) -> list[Route]:
    """Routes of other rooms served here beside /owntracks and /osmand: the members' handheld
    (its uplinks into this process's chain, then its sign-in, reads, photos, outbox and app)."""
    handheld = Handheld(load_settings())
    return uplink_routes(deliver, handheld.sessions.authenticate) + handheld.routes()


def gunicorn_options(settings) -> dict:
    """gunicorn's settings for this service (nothing read from a gunicorn config file)."""
    return {
        "bind": [f"{settings.ingest_http_host}:{settings.ingest_http_port}"],
        "workers": settings.ingest_http_workers,
        "worker_class": "ingest.http.protocol.GuardedWorker",
        "asgi_loop": "asyncio",
        "asgi_lifespan": "on",            # a chain that cannot start stops the service, never serves without
        "keepalive": settings.ingest_http_keepalive_s,   # idle between requests (a phone's fix: every 10 s)
        "timeout": 60,                    # a worker's heartbeat (its loop must never block this long)
        "graceful_timeout": 25,           # SIGTERM: open requests get this long (a commit waits 15 s at most)
        "worker_connections": 4096,
        "forwarded_allow_ips": ",".join(settings.ingest_http_trusted_proxies),   # X-Forwarded-Proto from them only
        "proc_name": "gcc-ingest-http",
        "accesslog": None,                # requests are counted (and refusals by reason), not logged
        "errorlog": "-",
        "loglevel": "info",
    }


class IngestHttpService(BaseApplication):
    def __init__(self, settings, routes: Callable[[Deliver], list[Route]] | None = None) -> None:
        self.settings, self.routes = settings, routes
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)

    def load(self):
        """In each worker process, after the fork: its own application, chain and inbox."""
        return build_app(self.settings, self.routes)


def main(routes: Callable[[Deliver], list[Route]] = extra_routes) -> int:
    """Serve until stopped; `routes`: the routes beside the device endpoints (tests pass their own)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    log.info("device-facing HTTP on http://%s:%d (%d processes)", settings.ingest_http_host,
             settings.ingest_http_port, settings.ingest_http_workers)
    IngestHttpService(settings, routes).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
