"""All settings of the command center, read from environment variables prefixed with GCC_.

Precedence (highest first): the process environment, then the env file named by GCC_ENV_FILE
(by default `.data/stack.env`, which `make demo` writes with the local stack's ports and generated
demo credentials), then the defaults below. README.md documents every setting.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from psycopg2.extensions import make_dsn
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / ".data"


def _env_file() -> Path:
    return Path(os.environ.get("GCC_ENV_FILE", DEFAULT_DATA_DIR / "stack.env"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GCC_", extra="ignore", frozen=True)

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="where the local stack keeps its data")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(18830, description="Mosquitto MQTT listener")
    mqtt_username: str = Field("ingest", description="the ingest service's broker account")
    mqtt_password: SecretStr = SecretStr("")

    redis_host: str = "127.0.0.1"
    redis_port: int = 16379
    redis_username: str = Field("default", description="the app's own Redis user (the stack gives each app one)")
    redis_password: SecretStr = SecretStr("")

    pg_host: str = "127.0.0.1"
    pg_port: int = 15432
    pg_database: str = "gridcc"
    pg_user: str = "gridcc"
    pg_password: SecretStr = SecretStr("")

    broker_admin_username: str = Field("broker-admin", description="the broker account that adds, changes and "
                                       "disables device accounts at run time (the registry: its CLI, the "
                                       "admin page)")
    broker_admin_password: SecretStr = SecretStr("")
    public_mqtt_host: str = Field("", description="the broker as phones reach it (OwnTracks configurations); "
                                  "empty: mqtt_host")
    public_mqtt_port: int = Field(0, description="its port as phones reach it; 0: mqtt_port")
    public_mqtt_tls: bool = Field(False, description="phones connect with TLS (a TLS listener or proxy in front)")
    public_ingest_url: str = Field("", description="the ingest HTTP endpoint as phones reach it, e.g. "
                                   "https://gcc.example.org; empty: http://<ingest_http_host>:<ingest_http_port>")
    broker_credentials_file: Path | None = Field(None, description="the broker's accounts (its dynamic "
                                                 "security file, hashed passwords), for the OwnTracks HTTP "
                                                 "endpoint's Basic auth")

    ingest_http_host: str = "127.0.0.1"
    ingest_http_port: int = Field(9108, description="the device-facing HTTP service's port (`python -m "
                                  "ingest.http`: /owntracks, /osmand/<token>, the handheld's API)")
    ingest_metrics_port: int = Field(9128, description="first ingest worker's /metrics and /healthz port "
                                     "(127.0.0.1 only); worker N uses this + N - 1")
    ingest_batch_size: int = 2000
    ingest_flush_interval_s: float = Field(0.1, description="a batch is committed at latest this long after its "
                                           "first message")
    ingest_receive_maximum: int = Field(4000, description="unacknowledged messages in flight per worker")

    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8050
    cases_metrics_port: int = Field(9148, description="the cases engine's /metrics and /healthz (internal)")
    cases_alarm_min_severity: int = Field(3, ge=1, le=4, description="device alarms at or above this severity "
                                          "(1 low ... 4 critical) become cases; the others stay on the wall")
    cases_merge_metres: float = Field(50.0, ge=0, description="a report this close to an open case of its "
                                      "category (and within cases_merge_minutes) merges into it")
    cases_merge_minutes: float = Field(30.0, ge=0, description="see cases_merge_metres")
    cases_warn_fraction: float = Field(0.8, gt=0, lt=1, description="a stage turns amber at this share of its limit")
    cases_time_scale: float = Field(1.0, gt=0, le=1, description="demo and tests only: every time limit and "
                                    "escalation delay as clock time times this (1/60: an hour in a minute); "
                                    "the screens say so when it is not 1")
    dispatch_offer_timeout_s: float = Field(180.0, gt=0, description="an offer of a normal case not accepted "
                                            "this long expires and goes to the next candidate")
    dispatch_offer_timeout_urgent_s: float = Field(120.0, gt=0, description="the same for an urgent case")
    dispatch_offer_tries: int = Field(3, ge=1, description="offers of one case before it is flagged unassigned")
    dispatch_radius_m: float = Field(3000.0, gt=0, description="how far to look for candidates")
    dispatch_walk_mps: float = Field(1.2, gt=0, description="walking speed for the ETA")
    dispatch_detour: float = Field(1.3, ge=1, description="street distance over straight-line distance (ETA)")
    dispatch_automatic: str = Field("", description="the categories in automatic mode, comma-separated: once "
                                    "registered, the cases engine offers them to the nearest available member "
                                    "itself (the dispatcher watches); every other category is dispatched by a "
                                    "person, by hand or with one key")
    kpi_score: str = Field("", description="the composite score's formula over the rates (fractions 0-1), e.g. "
                           "'on_time_handling * 60 + closure * 30 + (1 - rework) * 10 - 10 * overdue' (the default)")
    kpi_grades: str = Field("", description="grades by score, letter:minimum, comma-separated (default "
                            "'A:90,B:75,C:60,D:40,E:0')")
    dashboard_secret_key: SecretStr = Field(SecretStr(""), description="signs the session cookies; empty: a "
                                            "random key per start (everyone signs in again after a restart)")
    dashboard_secure_cookies: bool = Field(False, description="cookies only over HTTPS: set behind TLS")
    dashboard_session_idle_min: float = Field(30.0, description="a person's session ends unused this long")
    dashboard_session_hours: float = Field(12.0, description="a person's session ends this long after sign-in")
    dashboard_proxy_hops: int = Field(0, ge=0, le=5, description="reverse proxies in front of the dashboard whose "
                                      "X-Forwarded-For/-Proto/-Host it believes (0: none; behind one nginx: 1). "
                                      "The login throttle and the audit trail need the real source address")
    frame_interval_s: float = Field(0.5, description="the wall's live frames: at most one per room this often")
    tile_url: str | None = Field(None, description="an internal tile server, e.g. "
                                 "http://tiles.local/{z}/{x}/{y}.png; none: vector grids only (offline)")

    retention_positions_days: int = Field(400, description="GPS fixes kept this long")
    retention_sensor_readings_days: int = Field(400, description="sensor readings kept this long")
    retention_dead_letters_days: int = Field(30, description="dead letters kept this long")

    # --- ingest robustness: stalls, floods, QoS 0, retention of every hypertable (issue 9) ---------
    # (the ingest worker takes these through ingest.worker.WorkerConfig.from_settings; the
    # retention ones through database.timescale.retention_from_settings)
    ingest_stall_after_s: float = Field(30.0, description="/healthz answers 503 when a worker has had messages "
                                        "waiting this long without committing")
    ingest_device_rate_per_s: float = Field(50.0, description="messages per second one device may send on "
                                            "average, per worker (0: no limit); beyond it: dead letter "
                                            "rate_limited. The simulator's devices send at most 2/s")
    ingest_device_burst: int = Field(5000, description="messages one device may send at once before its rate "
                                     "applies: a terminal's 7 hours of fixes, buffered while ingest was down")
    ingest_qos0_inbox_limit: int = Field(4000, description="a QoS 0 message that arrives while the worker's "
                                         "inbox holds more than this is dropped and counted (QoS 1: never)")
    retention_terminal_status_days: int = Field(400, description="terminal status history kept this long")
    retention_device_alarms_days: int = Field(1825, description="device alarms kept this long")
    retention_incident_reports_days: int = Field(1825, description="incident reports kept this long")
    retention_case_updates_days: int = Field(1825, description="terminals' case updates kept this long")
    retention_task_acks_days: int = Field(1825, description="task acknowledgements kept this long")
    retention_gateway_status_days: int = Field(400, description="gateway status history kept this long")
    retention_region_transitions_days: int = Field(400, description="OwnTracks region transitions kept this long")
    retention_announcement_reads_days: int = Field(400, description="announcement read receipts kept this long")
    retention_diary_entries_days: int = Field(1825, description="people's-feelings diary entries kept this long")
    retention_member_status_days: int = Field(400, description="members' dispatch status history kept this long")

    @property
    def pg_dsn(self) -> str:
        """libpq's key/value form, each value quoted as libpq needs (a password may hold anything)."""
        return make_dsn(host=self.pg_host, port=self.pg_port, dbname=self.pg_database, user=self.pg_user,
                        password=self.pg_password.get_secret_value())

    def automatic_categories(self) -> frozenset[str]:
        """The categories the cases engine dispatches itself (automatic mode)."""
        return frozenset(c.strip() for c in self.dispatch_automatic.split(",") if c.strip())

    def redis_client(self, **options):
        """A Redis client logged in as this app's own user."""
        import redis

        return redis.Redis(host=self.redis_host, port=self.redis_port, username=self.redis_username,
                           password=self.redis_password.get_secret_value(), **options)

    # --- ingest hardening after the security review of issue 9: budgets per kind, refusals,
    # live health, the OwnTracks endpoint behind a proxy (WorkerConfig.from_settings, ingest.http) ---
    ingest_report_rate_per_min: float = Field(10.0, description="incident reports one terminal may send a minute "
                                              "on average, per worker (0: no budget); beyond it: rate_limited. "
                                              "The simulator's terminals send about 0.3 an hour")
    ingest_report_burst: int = Field(30, description="incident reports one terminal may send at once")
    ingest_alarm_rate_per_min: float = Field(120.0, description="alarms one gateway may send a minute on average, "
                                             "per worker (0: no budget); beyond it: rate_limited")
    ingest_alarm_burst: int = Field(300, description="alarms one gateway may send at once")
    ingest_refusal_window_s: float = Field(60.0, description="per device, the first rate_limited message in this "
                                           "long is a dead letter; the later ones are acknowledged and counted")
    ingest_live_unhealthy_after_s: float = Field(30.0, description="/healthz answers 503 when every live update "
                                                 "has failed for this long (at once when Redis answers OOM)")
    ingest_http_trusted_proxies: tuple[str, ...] = Field((), description="addresses or networks (JSON list, e.g. "
                                                         '["10.0.0.5", "10.1.0.0/16"]) of reverse proxies whose '
                                                         "X-Forwarded-For the OwnTracks endpoint believes")

    # --- the device-facing HTTP service on gunicorn's ASGI worker (`python -m ingest.http`, issue 25) ---
    ingest_http_workers: int = Field(1, ge=1, description="the HTTP service's processes, each with its own "
                                     "ingest chain")
    ingest_http_metrics_port: int = Field(9138, ge=0, description="the HTTP service's /metrics and /healthz "
                                          "(127.0.0.1 only): process n takes the first free of this .. this + "
                                          "workers - 1 (0: any free port)")
    ingest_http_max_handlers: int = Field(16, ge=1, description="device requests one process works on at once "
                                          "(its threads; reading a body and waiting for the chain's commit take "
                                          "none); more wait their turn")
    ingest_http_max_queued: int = Field(64, ge=0, description="device requests one process lets wait for a "
                                        "thread; more are answered 503 too_busy at once")
    ingest_http_connections_per_source: int = Field(8, ge=1, description="connections at once from one address "
                                                    "(trusted proxies exempt); more are answered 429 at once")
    ingest_http_read_timeout_s: float = Field(10.0, gt=0, description="a client that sends nothing for this long "
                                              "is cut off")
    ingest_http_request_deadline_s: float = Field(15.0, gt=0, description="a request not arrived whole this long "
                                                  "after its first byte (the first: after the accept) is cut off")
    ingest_http_keepalive_s: int = Field(30, ge=0, description="a connection is kept open this long for its "
                                         "next request (a patrolling phone sends a fix every 10 s; 0: one "
                                         "request per connection)")

    # --- the grid's ledger (ledger/, issue 26) ---
    ledger_key: SecretStr = Field(SecretStr(""), description="32 random bytes, base64url: seals the ledger's ID "
                                  "numbers and phones (ledger/privacy.py); the local demo makes one in its data dir. "
                                  "Losing it loses them: keep it with the database's backups, apart")
    ledger_moved_out_keep_days: int = Field(365, ge=1, description="a resident who moved out is kept this many "
                                            "days after the move, then deleted (with their history's personal data)")

    # --- the members' phones' photos (handheld/photos.py): a phone's quota per day (the city's day) ---
    handheld_photos_per_day: int = Field(200, ge=1, description="photos one phone may upload a day; beyond it: "
                                         "429 over_quota until the next day")
    handheld_photo_mb_per_day: float = Field(300.0, gt=0, description="megabytes (as uploaded) one phone may upload "
                                             "a day; beyond it: 429 over_quota until the next day")

    # --- the members' phones' downlink (handheld/bridge.py, handheld/outbox.py) ---
    handheld_bridge_receive_maximum: int = Field(500, ge=1, le=65535, description="downlink messages the broker "
                                                 "sends the handheld bridge before it has committed and acknowledged "
                                                 "them")
    handheld_stream_keepalive_s: float = Field(15.0, gt=0, description="a phone's open stream gets a comment "
                                               "this often when nothing else comes; its device is checked as often")


def load_settings(**overrides) -> Settings:
    """Settings from the environment and the env file; keyword overrides win (used by tests)."""
    return Settings(_env_file=_env_file(), **overrides)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()
