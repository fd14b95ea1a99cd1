"""TimescaleDB features by edition, detected at start-up.

The Apache-2 edition (what Debian builds, and what we test here) has hypertables, time_bucket and
drop_chunks, but no retention or compression policies and no continuous aggregates. The
community ("timescale") edition has all of them. We use the policies where they exist, and
otherwise run retention ourselves with drop_chunks on a schedule (`RetentionJob`).

Retention: every hypertable has its own period (a message kind's table: the one its kind declares,
telemetry/kinds/), and a setting (`GCC_RETENTION_<TABLE>_DAYS`) for those listed below, enforced
by a retention policy on the community edition and by our hourly drop_chunks job on the Apache
edition. A chunk is dropped once all of it is older than the period, so data lives up to one chunk
interval (database/migrations/0002, 0004) longer.

| table | setting | default | why |
|---|---|---|---|
| `positions` | `GCC_RETENTION_POSITIONS_DAYS` | 400 days | a year of patrols, and the same month a year back |
| `terminal_status` | `GCC_RETENTION_TERMINAL_STATUS_DAYS` | 400 days | as positions: who was on duty |
| `sensor_readings` | `GCC_RETENTION_SENSOR_READINGS_DAYS` | 400 days | a year of meters, compared year on year |
| `gateway_status` | `GCC_RETENTION_GATEWAY_STATUS_DAYS` | 400 days | as the readings it explains (gaps) |
| `region_transitions` | `GCC_RETENTION_REGION_TRANSITIONS_DAYS` | 400 days | as positions |
| `device_alarms` | `GCC_RETENTION_DEVICE_ALARMS_DAYS` | 1825 days | case records: audited years later |
| `incident_reports` | `GCC_RETENTION_INCIDENT_REPORTS_DAYS` | 1825 days | case records |
| `task_acks` | `GCC_RETENTION_TASK_ACKS_DAYS` | 1825 days | how a case was handled, as long as the case |
| `announcement_reads` | `GCC_RETENTION_ANNOUNCEMENT_READS_DAYS` | 400 days | a year of who read what |
| `diary_entries` | `GCC_RETENTION_DIARY_ENTRIES_DAYS` | 1825 days | assessed, like the cases |
| `member_status` | `GCC_RETENTION_MEMBER_STATUS_DAYS` | 400 days | a year of who was available when |
| `dead_letters` | `GCC_RETENTION_DEAD_LETTERS_DAYS` | 30 days | for diagnosis only; each keeps at most 8 KB |
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

import psycopg2

from database.roles import INGEST_TABLES
from telemetry import kinds

log = logging.getLogger(__name__)

APACHE = "apache"
COMMUNITY = "timescale"

# Compression pays off for the big, append-only series; segmenting by device keeps
# "one terminal's track" queries fast on compressed chunks.
COMPRESSION = {
    "positions": {"segmentby": "terminal_id", "after": timedelta(days=2)},
    "sensor_readings": {"segmentby": "sensor_id, quantity", "after": timedelta(days=2)},
}


@dataclass(frozen=True)
class Capabilities:
    edition: str
    version: str

    @property
    def has_policies(self) -> bool:
        """Retention/compression policies and continuous aggregates (community edition only)."""
        return self.edition == COMMUNITY


def detect(conn) -> Capabilities:
    with conn.cursor() as cur:
        cur.execute("select extversion from pg_extension where extname = 'timescaledb'")
        row = cur.fetchone()
        if row is None:
            raise RuntimeError("the timescaledb extension is not installed in this database")
        cur.execute("select current_setting('timescaledb.license', true)")
        license_ = (cur.fetchone()[0] or APACHE).lower()
    return Capabilities(edition=COMMUNITY if license_ == COMMUNITY else APACHE, version=row[0])


# Every hypertable (the table of the module docstring): its retention is settings.retention_<table>_days.
HYPERTABLES = (*INGEST_TABLES, "member_status")   # every time series: what the ingest writes, and the status
                                                  # history (cases and their events are kept)


def retention_from_settings(settings) -> dict[str, timedelta]:
    """Each hypertable's retention: its setting, or else (a message kind with no setting of its own) the
    period its kind declares (telemetry.kinds)."""
    def days(table: str) -> int:
        setting = getattr(settings, f"retention_{table}_days", None)
        return setting if setting is not None else kinds.TABLES[table].retention_days
    return {table: timedelta(days=days(table)) for table in HYPERTABLES}


def apply_policies(conn, retention: dict[str, timedelta]) -> Capabilities:
    """Install retention and compression policies when the edition has them (idempotent)."""
    caps = detect(conn)
    if not caps.has_policies:
        log.info("TimescaleDB %s (%s edition): no policies; retention runs as a job of ours",
                 caps.version, caps.edition)
        unschedule_unsupported_jobs(conn)
        return caps
    with conn, conn.cursor() as cur:
        for table, keep in retention.items():
            cur.execute("select add_retention_policy(%s, drop_after => %s, if_not_exists => true)",
                        (table, keep))
        for table, spec in COMPRESSION.items():
            cur.execute(f"alter table {table} set (timescaledb.compress, "
                        f"timescaledb.compress_segmentby = %s)", (spec["segmentby"],))
            cur.execute("select add_compression_policy(%s, compress_after => %s, if_not_exists => true)",
                        (table, spec["after"]))
    return caps


def unschedule_unsupported_jobs(conn) -> list[str]:
    """The Apache edition runs no policy job, yet TimescaleDB 2.15+ schedules one of its own (the
    job history's retention, "Job History Log Retention Policy [3]"), which fails at every start
    with "functionality not supported under the current apache license" in the server's log. Its
    schedule is switched off in the extension's catalog (alter_job is not in that edition either);
    the history it would trim stays empty, for no job runs. Returns the jobs switched off."""
    with conn, conn.cursor() as cur:
        cur.execute("update _timescaledb_config.bgw_job set scheduled = false "
                    "where scheduled and proc_schema = '_timescaledb_functions' and proc_name like 'policy%%' "
                    "returning application_name")
        jobs = [name for (name,) in cur.fetchall()]
    if jobs:
        log.info("TimescaleDB (apache edition): unscheduled %s, which that edition cannot run", ", ".join(jobs))
    return jobs


def drop_expired_chunks(conn, retention: dict[str, timedelta]) -> dict[str, int]:
    """Retention by hand: drop every chunk entirely older than the table's retention period."""
    dropped = {}
    with conn, conn.cursor() as cur:
        for table, keep in retention.items():
            cur.execute("select count(*) from drop_chunks(%s, older_than => %s)", (table, keep))
            dropped[table] = cur.fetchone()[0]
    return dropped


class RetentionJob:
    """Runs drop_expired_chunks every `interval` on a daemon thread (Apache edition only)."""

    def __init__(self, dsn: str, retention: dict[str, timedelta],
                 interval: timedelta = timedelta(hours=1)) -> None:
        self.dsn = dsn
        self.retention = retention
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self.runs = 0
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def run_once(self) -> dict[str, int]:
        conn = psycopg2.connect(self.dsn)
        try:
            return drop_expired_chunks(conn, self.retention)
        finally:
            conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                dropped = self.run_once()
                self.runs += 1
                if any(dropped.values()):
                    log.info("retention dropped chunks: %s", dropped)
            except Exception:  # contained: logged and counted, retried next interval
                self.failures += 1
                log.exception("retention run failed")
            self._stop.wait(self.interval.total_seconds())
