"""The project's own local stack of real servers (Mosquitto, Redis, PostgreSQL+TimescaleDB)."""
from .stack import LocalStack, free_port

__all__ = ["LocalStack", "free_port"]
