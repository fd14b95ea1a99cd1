"""The database roles our apps log in as: least privilege, applied after every migration.

    owner       runs the migrations and the retention job (the role that owns the tables)
    gcc_ingest  the ingest workers: insert what devices send, read the reference data
    gcc_dashboard  the screens: read everything; write only what dashboard/commands.py writes (a
                   person's work on a case and a hotline case entered among it), the logins
                   (users, sessions, wall tokens, the login throttle) and the registry (the admin
                   pages: devices, members, boundaries); every command a screen can issue is run
                   as this role in tests/integration/test_commands_as_dashboard_role.py
    gcc_cases   the cases engine (intake and escalation): read what the ingest stored, write the
                cases, their events and escalation steps, take the inbox's rows off; maintain the
                assessment's facts and rollups

Grants are listed here table by table and applied again at every start (idempotent), so a table a
new migration adds is covered once it is named here; `ungranted_tables` says which are not. A
message kind's table is named by its kind (telemetry.kinds): the ingest writes it, everyone reads it.

What PostgreSQL grants to PUBLIC by default is taken back: connecting to the maintenance databases
(postgres, template1) and creating temporary tables in ours. Each app role may connect to our
database only; temporary tables only the ingest, which stages every batch in them (COPY, then
insert ... on conflict).
"""
from __future__ import annotations

import psycopg2
from psycopg2 import sql

from telemetry import kinds

INGEST = "gcc_ingest"
DASHBOARD = "gcc_dashboard"
CASES = "gcc_cases"

REFERENCE_TABLES = ("city_info", "org_units", "grids", "buildings", "units", "organizations", "gateways",
                    "sensors", "members", "member_devices", "registry_state")
INGEST_TABLES = (*kinds.TABLES, "dead_letters")   # each message kind's table (telemetry.kinds), and the refused
REGISTRY_WRITES = ("members", "member_devices", "gateways", "sensors", "grids",   # changed at run time (registry/)
                   "org_units")     # a street's communities, a district's streets: their boundaries imported
DASHBOARD_WRITES = ("audit_log", "alarm_acknowledgements", "diary_ratings")
LOGIN_TABLES = ("users", "wall_tokens", "sessions", "login_throttle")   # the dashboard's logins (dashboard/accounts.py)
CASE_TABLES = ("cases", "case_sources", "case_events", "case_escalations", "case_notices",   # the cases engine writes
               "case_offers")
CASE_RULES = ("time_limits", "work_calendar")                                 # the rules it decides by
CASE_INBOX = ("case_inbox",)        # filled by triggers on the ingest's tables, emptied by the intake
ANNOUNCEMENTS = ("announcements", "announcement_recipients")   # written by the screens, sent by the engine
DUTY = ("duty_roster",)             # who is on duty when (the demo writes its own; an admin loads the real one)
STATUS_HISTORY = ("member_status",)  # the members' dispatch status over time, recorded by the cases engine
KPI_TABLES = ("case_facts", "case_stage_facts", "kpi_daily", "kpi_durations",    # the assessment's facts and rollups
              "patrol_daily", "patrol_watermark", "patrol_units_daily")
KPI_DIRTY = ("kpi_dirty",)          # filled by a trigger on case_events, emptied by the rollup maintainer
HANDHELD_ENROLMENTS = ("handheld_enrolments",)   # one-time codes: made by the registry (the admin page)
HANDHELD_CREDENTIALS = ("handheld_credentials",)  # made by handheld_redeem, read at sign-in, revoked by the registry
HANDHELD_SESSIONS = ("handheld_sessions",)        # the handheld's sign-ins (the ingest's device-facing server)
HANDHELD_TABLES = HANDHELD_ENROLMENTS + HANDHELD_CREDENTIALS + HANDHELD_SESSIONS
HANDHELD_OUTBOX = ("handheld_outbox",)   # the phones' downlink: the bridge writes it, the device-facing server
#                                          reads and acknowledges it (both as the ingest; handheld/outbox.py)
HANDHELD_READS = CASE_TABLES + ANNOUNCEMENTS + ("patrol_daily",)   # what a phone reads (handheld/reads.py)
OTHER_TABLES = ("schema_migrations",)

TEMP_TABLES = {INGEST}        # the roles that may create temporary tables (the ingest's staging)

# role -> (privileges, tables)
GRANTS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    INGEST: [("select, insert", INGEST_TABLES), ("select", REFERENCE_TABLES),
             ("select", HANDHELD_CREDENTIALS), ("select, insert, update", HANDHELD_SESSIONS)],   # handhelds' sign-in
    DASHBOARD: [("select", REFERENCE_TABLES + INGEST_TABLES + DASHBOARD_WRITES + OTHER_TABLES + CASE_TABLES
                 + CASE_RULES + CASE_INBOX + ANNOUNCEMENTS + DUTY + STATUS_HISTORY + KPI_TABLES),   # inbox: rules page
                ("insert", DASHBOARD_WRITES + ANNOUNCEMENTS),
                ("insert, update", ("cases",)),           # a hotline case entered; a person's work on a case
                ("update", ("diary_ratings",)),           # a leader rates a diary entry again
                ("insert", ("case_events", "case_notices", "case_offers")),
                ("update", ("case_offers",)),             # an offer withdrawn (returned, reassigned)
                ("insert", ("time_limits",)),             # an admin's new version of the time limits
                ("insert, update", ("work_calendar",)),   # an admin's calendar overrides
                ("select, insert, update", LOGIN_TABLES),
                ("insert, update", REGISTRY_WRITES),         # the admin page's registry (registry.store)
                ("select", HANDHELD_TABLES),                 # … a handheld enrolled, revoked (its sessions ended)
                ("insert", HANDHELD_ENROLMENTS), ("update", HANDHELD_CREDENTIALS + HANDHELD_SESSIONS)],
    CASES: [("select", REFERENCE_TABLES + INGEST_TABLES),
            ("insert", ("audit_log",)),               # a terminal's refused case update is audited
            ("select, insert, update", ("cases",)),
            ("select, insert", CASE_TABLES[1:]),      # sources, events, escalation steps, notices: added
            ("update", ("case_notices", "case_offers")),   # … a notice marked sent, an offer decided
            ("select, insert", CASE_RULES),           # it seeds the defaults and the calendar's next years
            ("select, update, delete", CASE_INBOX),
            ("select, update", ("announcements",)),   # it publishes them and marks them sent
            ("select", DUTY),
            ("select, insert", STATUS_HISTORY),
            ("select, insert, update", KPI_TABLES),  # it maintains the assessment's rollups (kpis/rollup.py)
            ("select, update, delete", KPI_DIRTY)],   # taken FOR UPDATE SKIP LOCKED (needs update)
}
# the members' phones, served by the ingest's device-facing server: their outbox and their reads
GRANTS[INGEST] += [("select, insert, update", HANDHELD_OUTBOX), ("select", HANDHELD_READS)]
# the members' phones' photos (handheld/photos.py): the device-facing server (as the ingest) stores
# them and reads them back to the phones; the screens show them (dashboard/photos.py)
PHOTOS = ("photos",)
GRANTS[INGEST] += [("select, insert", PHOTOS)]
GRANTS[DASHBOARD] += [("select", PHOTOS)]
# the grid's ledger (issue 26, migration 0032, ledger/): the screens read and keep it (a reviewer
# approves what members registered, an admin imports and edits, the moved-out deletion job runs
# there); the ingest stores what members register from the handheld (the review queue) and reads
# the ledger to flag duplicates; the cases engine reads what a case concerns. PostGIS's own table
# of coordinate systems is reference data everyone may read.
LEDGER = ("houses", "households", "residents", "resident_tags", "things", "ledger_changes", "ledger_grants")
LEDGER_SUBMISSIONS = ("ledger_submissions",)
CASE_SUBJECTS = ("case_subjects",)
LEDGER_PLACES = ("buildings", "units", "organizations")    # reference tables the ledger adds to
POSTGIS = ("spatial_ref_sys",)
GRANTS[DASHBOARD] += [("select, insert, update, delete", LEDGER), ("select, update", LEDGER_SUBMISSIONS),
                      ("select, insert, delete", CASE_SUBJECTS), ("insert, update", LEDGER_PLACES),
                      ("select", POSTGIS)]
GRANTS[INGEST] += [("select, insert", LEDGER_SUBMISSIONS), ("select", LEDGER[:5] + POSTGIS)]
GRANTS[CASES] += [("select", LEDGER[:5] + CASE_SUBJECTS + LEDGER_SUBMISSIONS + POSTGIS)]
# the cases engine runs the moved-out deletion job once a day (casework.moved_out, ledger.store.delete_moved_out):
# it deletes the residents (their tags cascade), unsets a household's head, scrubs their history and
# the submissions that made them, and writes a 'delete' change for each
GRANTS[CASES] += [("delete", ("residents", "resident_tags")), ("update", ("households", "ledger_submissions")),
                  ("select, insert, update", ("ledger_changes",))]
# role -> sequences it draws from (the dashboard: a dispatcher enters a hotline case)
SEQUENCES = {CASES: ("case_numbers",), DASHBOARD: ("case_numbers",)}
# role -> security definer functions it may call (executing them is taken back from PUBLIC)
FUNCTIONS = {INGEST: ("handheld_redeem(bytea, bytea, text, text, text)",)}   # a handheld's code used



def ensure_roles(owner_dsn: str, passwords: dict[str, str]) -> None:
    """Create the app roles (login, no superuser, no create) with these passwords, and grant each
    exactly its tables. Safe to run again."""
    conn = psycopg2.connect(owner_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select current_database()")
            database = cur.fetchone()[0]
            cur.execute(sql.SQL("revoke connect, temporary on database postgres, template1 from public"))
            cur.execute(sql.SQL("revoke temporary on database {} from public").format(sql.Identifier(database)))
            for role, password in passwords.items():
                cur.execute("select 1 from pg_roles where rolname = %s", (role,))
                verb = "alter" if cur.fetchone() else "create"
                cur.execute(sql.SQL("{} role {} login nosuperuser nocreatedb nocreaterole noinherit password %s")
                            .format(sql.SQL(verb), sql.Identifier(role)), (password,))
                on_database = (sql.Identifier(database), sql.Identifier(role))
                cur.execute(sql.SQL("grant connect on database {} to {}").format(*on_database))
                if role in TEMP_TABLES:
                    cur.execute(sql.SQL("grant temporary on database {} to {}").format(*on_database))
                else:
                    cur.execute(sql.SQL("revoke temporary on database {} from {}").format(*on_database))
                cur.execute(sql.SQL("grant usage on schema public to {}").format(sql.Identifier(role)))
                for privileges, tables in GRANTS.get(role, []):
                    cur.execute(sql.SQL("grant {} on {} to {}").format(
                        sql.SQL(privileges), sql.SQL(", ").join(map(sql.Identifier, tables)), sql.Identifier(role)))
                for sequence in SEQUENCES.get(role, ()):
                    cur.execute(sql.SQL("grant usage on sequence {} to {}").format(
                        sql.Identifier(sequence), sql.Identifier(role)))
                for function in FUNCTIONS.get(role, ()):
                    cur.execute(sql.SQL("grant execute on function {} to {}").format(
                        sql.SQL(function), sql.Identifier(role)))
    finally:
        conn.close()


def ungranted_tables(owner_dsn: str) -> list[str]:
    """Tables of the public schema that no list above names (a migration added one)."""
    named = set(REFERENCE_TABLES + INGEST_TABLES + DASHBOARD_WRITES + LOGIN_TABLES + OTHER_TABLES + CASE_TABLES
                + CASE_RULES + CASE_INBOX + ANNOUNCEMENTS + DUTY + STATUS_HISTORY + KPI_TABLES + KPI_DIRTY
                + HANDHELD_TABLES + HANDHELD_OUTBOX + PHOTOS + LEDGER + LEDGER_SUBMISSIONS + CASE_SUBJECTS + POSTGIS)
    conn = psycopg2.connect(owner_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select tablename from pg_tables where schemaname = 'public'")
            return sorted(t for (t,) in cur.fetchall() if t not in named)
    finally:
        conn.close()
