"""The handheld's endpoints as one device-facing server process serves them (docs/HANDHELD_API.md):
sign-in (handheld.sessions), its reads (handheld.reads), photos (handheld.photos), the downlink
outbox and stream (handheld.outbox), the members' registrations (handheld.ledger) and the app's
files (handheld.static). The uplinks are the ingest's (ingest.http.handheld: they go into its
chain), authenticated by `sessions.authenticate`.

Built in each server process after its fork (its own pools, its LISTEN threads, its copy of the
city kept current by database.citydb.CityWatch)."""
from __future__ import annotations

import logging
import time

import psycopg2

from core.http import Route
from core.throttle import LoginThrottle
from database.citydb import CityWatch, read_city
from handheld import static
from handheld.ledger import HandheldLedger
from handheld.outbox import Outbox
from handheld.photos import PhotoLimits, Photos
from handheld.reads import HandheldReads
from handheld.sessions import Sessions

log = logging.getLogger(__name__)


def _city(dsn: str, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg2.connect(dsn) as conn:
                return read_city(conn)
        except (psycopg2.Error, LookupError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("waiting for the city's reference data: %s", exc)
            time.sleep(2)     # the database is still starting: nothing to wait on but time


class Handheld:
    def __init__(self, settings) -> None:
        dsn = settings.pg_dsn
        self.sessions = Sessions(dsn, LoginThrottle())
        self.reads = HandheldReads(_city(dsn), dsn)
        self.watch = CityWatch(dsn, self.reads.city, [self._city_changed]).start()
        self.photos = Photos(dsn, PhotoLimits.from_settings(settings))
        self.outbox = Outbox(dsn)
        self.ledger = HandheldLedger.from_settings(settings)

    def _city_changed(self, city, tables) -> None:
        self.reads.city = city

    def routes(self) -> list[Route]:
        """The API's routes, then the app's files (whose prefix, /handheld/, would match them all)."""
        signed_in = self.sessions.signed_in
        return (self.sessions.routes() + self.reads.routes(signed_in) + self.photos.routes(signed_in)
                + self.outbox.routes(signed_in) + self.ledger.routes(signed_in) + static.routes())

    def close(self) -> None:
        self.watch.stop()
        self.outbox.close()
        self.photos.close()
        self.ledger.close()
