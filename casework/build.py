"""The cases engine from the settings: the intake over the city, the rules from the database, the
live bus, offers and the nearest available member (dispatch.candidates) for automatic dispatch;
and the seeding of what it needs in the database (importable without the process's entry point,
which blocks the stop signals when imported)."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import psycopg2

from cases import store
from cases.engine import Engine
from cases.intake import Intake, IntakeSettings
from cases.offers import OfferPolicy
from cases.tell import Teller
from config.settings import Settings
from database.citydb import read_city
from dispatch.candidates import Settings as SearchSettings
from dispatch.candidates import first_available
from dispatch.roster import RosterCache


def build(settings: Settings, producer: str = "cases") -> Engine:
    """An engine, not yet running; `producer` names its writes on the live bus (one name per
    process: readers number each producer's envelopes)."""
    conn = psycopg2.connect(settings.pg_dsn)
    try:
        city = read_city(conn)
    finally:
        conn.close()
    intake = Intake(city, IntakeSettings(settings.cases_alarm_min_severity, settings.cases_merge_metres,
                                         settings.cases_merge_minutes))
    r = settings.redis_client(socket_timeout=10)     # the app's own Redis user
    looking = SearchSettings.from_settings(settings)
    roster = RosterCache()
    return Engine(settings.pg_dsn, intake, lambda cur: store.load_rules(
        cur, warn_fraction=settings.cases_warn_fraction, time_scale=settings.cases_time_scale),
        on_change=Teller(r, city, producer=producer), policy=OfferPolicy.from_settings(settings),
        pick=lambda cur, case, offered: first_available(r, city, cur, case, offered, time.time(), looking, roster),
        automatic=settings.automatic_categories())


def seed(dsn: str, actor: str) -> tuple[int, int]:
    """The default time limits and the working calendar's days of this year, the one before and the
    next, where missing: (limit rows, calendar days) added."""
    year = datetime.now(timezone.utc).year
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            return store.seed(cur, [year - 1, year, year + 1], actor)
    finally:
        conn.close()
