"""All settings of the command center, read from environment variables prefixed with GCC_.

Precedence (highest first): the process environment, then the env file named by GCC_ENV_FILE
(by default `.data/stack.env`, which `make demo` writes with the local stack's ports and generated
demo credentials), then the defaults below. README.md documents every setting.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

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
    redis_password: SecretStr = SecretStr("")

    pg_host: str = "127.0.0.1"
    pg_port: int = 15432
    pg_database: str = "gridcc"
    pg_user: str = "gridcc"
    pg_password: SecretStr = SecretStr("")

    mqtt_password_file: Path | None = Field(None, description="the broker's password file, for the "
                                            "OwnTracks HTTP endpoint's Basic auth")

    ingest_http_host: str = "127.0.0.1"
    ingest_http_port: int = Field(9108, description="first ingest worker's /metrics and /owntracks port; "
                                  "worker N uses this + N - 1")
    ingest_batch_size: int = 2000
    ingest_flush_interval_s: float = Field(0.1, description="a batch is committed at latest this long after its "
                                           "first message")
    ingest_receive_maximum: int = Field(4000, description="unacknowledged messages in flight per worker")

    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8050
    frame_interval_s: float = Field(0.5, description="the wall's live frames: at most one per room this often")
    tile_url: str | None = Field(None, description="an internal tile server, e.g. "
                                 "http://tiles.local/{z}/{x}/{y}.png; none: vector grids only (offline)")

    retention_positions_days: int = Field(400, description="GPS fixes kept this long")
    retention_sensor_readings_days: int = Field(400, description="sensor readings kept this long")
    retention_dead_letters_days: int = Field(30, description="dead letters kept this long")

    @property
    def pg_dsn(self) -> str:
        return (f"host={self.pg_host} port={self.pg_port} dbname={self.pg_database} "
                f"user={self.pg_user} password={self.pg_password.get_secret_value()}")

    @property
    def redis_url(self) -> str:
        return (f"redis://:{self.redis_password.get_secret_value()}@"
                f"{self.redis_host}:{self.redis_port}/0")


def load_settings(**overrides) -> Settings:
    """Settings from the environment and the env file; keyword overrides win (used by tests)."""
    return Settings(_env_file=_env_file(), **overrides)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()
