"""The registry's side of the members' handheld (网格通): the one-time enrolment codes an admin makes,
and a handheld's sessions and credentials ended when it is revoked or retired, each in the
registry's own transaction (registry.store). What the phone does with a code, its PIN and its
sessions is handheld.sessions'; both read the tables of migration 0028 through the names here.

A handheld has no broker account: it speaks HTTPS to the ingest's device-facing server, so nothing
here (or in registry.store) sends the broker a command for it.

Secrets are stored hashed only (`digest`): a code or a token is random (128+ bits), so sha256 is
enough; the PIN, six digits, is Argon2id (handheld.sessions)."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

ENROLMENT_VALID = timedelta(hours=24)
CODE_BYTES = 24                 # 192 bits, url-safe base64: 32 characters
DEVICE_PREFIX = "hh"


@dataclass(frozen=True)
class Enrolment:
    """A one-time code (shown once, as a link and a QR code) that binds a phone to `member_id` as
    the device `device_id`, until `expires_at`."""
    code: str
    expires_at: datetime
    device_id: str
    member_id: str

    def link(self, public_url: str) -> str:
        """The app's enrolment link: the code in the fragment, so it never reaches a server's log."""
        return f"{public_url.rstrip('/')}/handheld/#enrol={self.code}"


def digest(secret: str) -> bytes:
    """What is stored of a code, a device secret or a session token."""
    return hashlib.sha256(secret.encode()).digest()


def _device_id(cur, member_id: str) -> str:
    """A readable id never used before (by a device, a gateway, or a code not used yet)."""
    for n in range(1, 100):
        candidate = f"{DEVICE_PREFIX}-{member_id}-{n}"
        cur.execute("select 1 from member_devices where device_id = %s union all "
                    "select 1 from handheld_enrolments where device_id = %s union all "
                    "select 1 from gateways where gateway_id = %s", (candidate, candidate, candidate))
        if cur.fetchone() is None:
            return candidate
    return f"{DEVICE_PREFIX}-{member_id}-{secrets.token_hex(4)}"


def create_enrolment(cur, member_id: str, label: str, created_by: str) -> Enrolment:
    """A new code for the (active, checked by the caller) member's phone, in the caller's transaction."""
    code = secrets.token_urlsafe(CODE_BYTES)
    device_id = _device_id(cur, member_id)
    cur.execute("insert into handheld_enrolments (code_sha256, member_id, device_id, label, created_by, expires_at) "
                "values (%s, %s, %s, %s, %s, now() + %s) returning expires_at",
                (digest(code), member_id, device_id, label, created_by, ENROLMENT_VALID))
    return Enrolment(code, cur.fetchone()[0], device_id, member_id)


def end_sessions(cur, device_ids: list[str]) -> int:
    """Every open session of these devices ended now (a revoked or retired phone stops at once)."""
    if not device_ids:
        return 0
    cur.execute("update handheld_sessions set ended_at = now() where device_id = any(%s) and ended_at is null",
                (list(device_ids),))
    return cur.rowcount


def revoke(cur, device_id: str) -> int:
    """A handheld's credentials revoked (it may not sign in again) and its sessions ended; returns
    how many sessions were open."""
    cur.execute("update handheld_credentials set revoked_at = now() where device_id = %s and revoked_at is null",
                (device_id,))
    return end_sessions(cur, [device_id])
