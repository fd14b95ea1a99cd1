"""Mosquitto 2's password-file hashes ("$7$": PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt):
written by the local stack for the broker, checked by the ingest's OwnTracks HTTP endpoint so that a
phone posting over HTTP proves the same identity it would over MQTT."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

ITERATIONS = 101


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    try:
        _, kind, iterations, salt, digest = stored.split("$")
        if kind != "7":
            return False
        expected = hash_password(password, salt=base64.b64decode(salt), iterations=int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected.rsplit("$", 1)[1], digest)


def read_password_file(path: Path) -> dict[str, str]:
    entries = {}
    for line in path.read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            user, stored = line.split(":", 1)
            entries[user] = stored.strip()
    return entries
