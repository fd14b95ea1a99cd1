"""Logging in at the device endpoints with a broker account: the broker's own accounts
(`BrokerAccounts`, its dynamic security file: the identity a phone would use over MQTT) behind the
login throttle (`Logins`)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

import orjson

from core.sources import throttle_source
from core.throttle import LoginThrottle
from telemetry.topics import AccountKind


class BrokerAccounts:
    """The broker's accounts as its dynamic security plugin keeps them (PBKDF2-SHA512, salted),
    read again only when the file changed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._loaded: tuple[float, dict[str, tuple[AccountKind | None, bytes, bytes, int]]] = (-1.0, {})
        self._dummy = (None, os.urandom(64), os.urandom(12), 101)

    def _accounts(self) -> dict[str, tuple[AccountKind | None, bytes, bytes, int]]:
        mtime = self.path.stat().st_mtime
        if mtime != self._loaded[0]:
            accounts = {}
            for client in orjson.loads(self.path.read_bytes()).get("clients", []):
                if "password" in client and not client.get("disabled", False):   # disabled: unknown
                    accounts[client["username"]] = (_kind(client), base64.b64decode(client["password"]),
                                                    base64.b64decode(client["salt"]), int(client["iterations"]))
            self._loaded = (mtime, accounts)
        return self._loaded[1]

    def check(self, username: str, password: str) -> AccountKind | None:
        """The account's kind when the password is right, else None; the same work either way."""
        if self.path is None:
            return None
        kind, digest, salt, iterations = self._accounts().get(username, self._dummy)
        tried = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
        return kind if hmac.compare_digest(tried, digest) and kind is not None else None


def _kind(client: dict) -> AccountKind | None:
    try:
        return AccountKind(client.get("textname", ""))
    except ValueError:
        return None


class Logins:
    """A login with a broker account of the kinds an endpoint admits. Checking a password costs the
    same for an unknown user; the attempt is counted (`LoginThrottle.reserve`) before the password
    is checked, and a throttled one is refused unchecked, the same for every username."""

    def __init__(self, accounts: BrokerAccounts, throttle: LoginThrottle | None = None) -> None:
        self.accounts, self.throttle = accounts, throttle or LoginThrottle()

    def basic(self, header: str | None, source: str, kinds: frozenset[AccountKind]) -> tuple[str | None, str]:
        """(user, "") when the HTTP Basic credentials are those of an enabled account of one of
        these kinds, else (None, why)."""
        if not header or not header.startswith("Basic "):
            return None, "no_credentials"
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, password = "", ""
        return self.login(user, password, source, kinds)

    def login(self, user: str, password: str, source: str, kinds: frozenset[AccountKind]) -> tuple[str | None, str]:
        """(user, "") when the password is that of an enabled account of one of these kinds, else
        (None, why: "too_many_failed_logins" or "bad_credentials"). A source is counted as
        core.sources says (an IPv6 address by its /64)."""
        counted = throttle_source(source)
        if self.throttle.reserve(user[:128], counted) is not None:
            return None, "too_many_failed_logins"
        kind = self.accounts.check(user, password)
        if kind is None or kind not in kinds:
            return None, "bad_credentials"
        self.throttle.succeeded(user[:128], counted)
        return user, ""
