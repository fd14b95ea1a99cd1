"""The people who use the screens, their sessions, and the wall screens' tokens: all in PostgreSQL
(database/migrations/0008_logins.sql), nothing secret in the clear.

- Passwords: argon2id (argon2-cffi's defaults, RFC 9106's second recommended option); a hash made
  with older parameters is replaced at the next successful login. An unknown username costs the
  same work as a known one (a dummy hash is verified), and both get the same answer.
- Throttle (`reserve`): guessing slows the guesser down instead of locking the owner out. An
  attempt is counted before its password is verified (reserved, under row locks, in a transaction
  committed before the slow hash: guesses sent at once cannot outrun the budget), and a success
  gives its count back. Three budgets: a (username, address) pair has a few free attempts, then
  waits twice as long after each one; an address has so many attempts in a window, whatever the
  usernames; a username has a high budget in a window across all addresses, which the addresses
  it signed in from lately pass. A username is throttled whether or not it exists, and a refused
  attempt is answered at once, the same for every username: nothing tells who exists.
- Sessions: a random 256-bit id in the cookie, its SHA-256 here; a new one at every login (no
  fixation). A session ends at logout, after `idle` without use, at its absolute end, when its
  user is disabled or its wall token revoked; `session()` checks all of that on every request.
- Wall tokens: random 256-bit, shown once, stored as SHA-256 (a token has all the entropy a hash
  needs; argon2 is for what people choose), revocable; a token opens a long session for its scope.

Every function takes the time it acts at (`now`), so tests need no clock of their own.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg2.pool import PoolError

from core import freetext
from core.roles import UserRole
from core.sources import throttle_source
from dashboard.authz import Identity
from database.pool import WaitingPool

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))   # verified for unknown users: the same work


@dataclass(frozen=True)
class Policy:
    """How long sessions live and how many failed logins are allowed."""
    idle: timedelta = timedelta(minutes=30)             # a person's session ends unused this long
    absolute: timedelta = timedelta(hours=12)           # and in any case after this
    wall_idle: timedelta = timedelta(days=2)            # a wall screen is always on; switched off, it signs in again
    wall_absolute: timedelta = timedelta(days=90)
    # the login throttle (`reserve`): every attempt counts until it succeeds
    failures_per_pair: int = 5                          # free attempts of one username from one address, then
    pair_delay: timedelta = timedelta(seconds=30)       # ... a wait before the next, doubled after each
    pair_delay_max: timedelta = timedelta(minutes=15)   # ... up to this;
    pair_forget: timedelta = timedelta(hours=1)         # a pair quiet this long starts over
    failures_per_address: int = 20                      # attempts from one address (any usernames) a window
    failures_per_user: int = 100                        # attempts for one username (all addresses) a window, ...
    known_address_for: timedelta = timedelta(days=30)   # ... which an address it signed in from this lately passes
    failure_window: timedelta = timedelta(minutes=15)
    password_min_length: int = 12


def throttle_keys(username: str, address: str) -> tuple[str, str, str]:
    """The login_throttle keys of an attempt: its (username, address) pair, its address, its username
    (an address as core.sources counts it: an IPv6 address by its /64)."""
    source = throttle_source(address)
    return f"pair:{source} {username}", f"addr:{source}", f"user:{username}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def normalize_username(username: str) -> str:
    """What a typed username is looked up, throttled and audited as."""
    return username.strip().lower()[:64]


def _identity(username: str | None, role: str | None, scope: str | None, display: str | None,
              token_name: str | None, token_scope: str | None) -> Identity:
    """A person's identity (their user row), or a wall screen's (its token's row)."""
    if username:
        return Identity(username, frozenset({UserRole(role)}), scope, display_name=display)
    return Identity(f"wall:{token_name}", frozenset({UserRole.WALL_VIEWER}), token_scope, display_name=token_name)


# Why a session (s) of a user (u) or a wall token (t) is over at %(now)s, or NULL while it is live:
# the one rule, for the lookup of one session and the keep-alive of the open screens.
_ENDED_WHY = ("case when s.expires_at <= %(now)s then 'expired' "
              "     when s.last_seen_at + make_interval(secs => s.idle_s) <= %(now)s then 'idle' "
              "     when u.disabled then 'user disabled' when t.revoked_at is not null then 'token revoked' end")
_SESSION_JOINS = ("from sessions s left join users u on u.username = s.username "
                  "left join wall_tokens t on t.id = s.wall_token_id ")


@dataclass(frozen=True)
class Session:
    """A live session."""
    id_hash: str
    identity: Identity
    wall_token_id: int | None
    expires_at: datetime


@dataclass(frozen=True)
class Login:
    """The outcome of a login attempt: a new session (`ok`: its id for the cookie), or why not
    (said to the log and the audit trail; the person sees one message for every failure)."""
    ok: bool
    reason: str
    session_id: str | None = None
    session: Session | None = None

    @property
    def identity(self) -> Identity | None:
        return self.session.identity if self.session else None


@dataclass(frozen=True)
class Budget:
    """A throttle row (table login_throttle): the attempts counted since `window_start` (for a
    pair: its last attempt), and for a pair, no attempt before `wait_until`."""
    attempts: int
    window_start: datetime
    wait_until: datetime | None = None


def reserve(pair: Budget, address: Budget, user: Budget, known_address, policy: Policy,
            now: datetime) -> tuple[str | None, tuple[Budget, Budget, Budget]]:
    """(None, the budgets with this attempt counted) when an attempt may be verified now, else
    (which budget refuses it: "pair", "address" or "user", the budgets unchanged): the rule, pure.

    - pair (username, address): the owner mistyping, or one guesser at one account. The first
      `failures_per_pair` are free; from then on each attempt sets a wait before the next one:
      `pair_delay`, doubled each time, at most `pair_delay_max`. A success, or `pair_forget`
      without an attempt, starts the pair over. It slows down only that address for that name.
    - address: one guesser trying many usernames: `failures_per_address` a `failure_window`.
    - user: guesses at one account spread over many addresses (a botnet, or a shared proxy):
      `failures_per_user` a window, high enough for no person's typing; past it only the
      addresses it signed in from lately (`known_address()`, asked only then) get through, so
      guesses from elsewhere never lock the owner out of their own (someone at the owner's own
      address, one office NAT, still spends that address's budget: a second factor is the answer).
    A refused attempt is not counted (it was never verified) and sets no longer wait."""
    def fresh(budget: Budget, since: timedelta) -> Budget:
        quiet = budget.window_start <= now - since and (budget.wait_until is None or budget.wait_until <= now)
        return Budget(0, now) if quiet else budget

    pair, address = fresh(pair, policy.pair_forget), fresh(address, policy.failure_window)
    user = fresh(user, policy.failure_window)
    if pair.wait_until is not None and pair.wait_until > now:
        return "pair", (pair, address, user)
    if address.attempts >= policy.failures_per_address:
        return "address", (pair, address, user)
    if user.attempts >= policy.failures_per_user and not known_address():
        return "user", (pair, address, user)
    counted = pair.attempts + 1
    wait = None
    if counted >= policy.failures_per_pair:
        doublings = min(counted - policy.failures_per_pair, 30)
        wait = now + min(policy.pair_delay * 2 ** doublings, policy.pair_delay_max)
    return None, (Budget(counted, now, wait), Budget(address.attempts + 1, address.window_start),
                  Budget(user.attempts + 1, user.window_start))


class Accounts:
    CHECK_EVERY_S = 2.0      # a session found live is believed this long (one dashboard process: its own
    TOUCH_EVERY_S = 60.0     # logouts act at once; a revocation by another process within this)

    def __init__(self, dsn: str, policy: Policy | None = None, pool_size: int = 8) -> None:
        self.dsn = dsn
        self.policy = policy or Policy()
        self._pool = WaitingPool(0, pool_size, dsn, wait_s=30, connect_timeout=5,
                                 application_name="gcc-dashboard-accounts")
        self._cache: dict[str, tuple[Session, float, float]] = {}   # id hash -> (session, checked, touched)
        self._cache_lock = threading.Lock()

    def close(self) -> None:
        self._pool.closeall()

    # --- users ---------------------------------------------------------------------------------
    # Each change is one of the cursor-level functions below, in a transaction of its own here;
    # dashboard.commands runs the same functions in the transaction of its audit row.
    def add_user(self, username: str, display_name: str, role: UserRole, scope_code: str, password: str,
                 created_by: str) -> None:
        self._check_password(password)
        with self._connection() as cur:
            if not insert_user(cur, username, display_name, role, scope_code, hash_password(password), created_by):
                raise ValueError(f"there is already a user {username}")

    def set_password(self, username: str, password: str, now: datetime) -> bool:
        """A new password; every session of the user ends."""
        self._check_password(password)
        with self._connection() as cur:
            found = update_password(cur, username, hash_password(password), now)
        self.forget()
        return found

    def set_disabled(self, username: str, disabled: bool, now: datetime) -> bool:
        with self._connection() as cur:
            found = update_disabled(cur, username, disabled, now)
        self.forget()
        return found

    def users(self) -> list[dict]:
        return self._rows("select username, display_name, role, scope_code, disabled, created_at, created_by, "
                          "last_login_at, (select count(*) from sessions s where s.username = users.username "
                          "and s.ended_at is null and s.expires_at > now()) as sessions from users order by username")

    def _rows(self, query: str) -> list[dict]:
        with self._connection() as cur:
            cur.execute(query)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _check_password(self, password: str) -> None:
        if len(password) < self.policy.password_min_length:
            raise ValueError(f"a password has at least {self.policy.password_min_length} characters")

    # --- logging in ----------------------------------------------------------------------------
    def login(self, username: str, password: str, source_address: str | None, user_agent: str | None,
              now: datetime) -> Login:
        """A session, or why not. The attempt is counted (committed) before the password is
        verified, and given back when it succeeds; a throttled one is answered at once."""
        username, address = normalize_username(username), source_address or "?"
        keys = throttle_keys(username, address)
        with self._connection() as cur:
            slowed = self._reserve(cur, keys, username, address, now)
            if slowed is None:
                cur.execute("select display_name, role, scope_code, password_hash, disabled from users "
                            "where username = %s", (username,))
                row = cur.fetchone()
        if slowed is not None:   # the same for any username, so it tells nothing
            return Login(False, f"slowed down ({slowed})")
        stored = row[3] if row else _DUMMY_HASH
        try:
            good = _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            good = False
        if not good or row is None or row[4]:
            return Login(False, "wrong password" if row and not row[4] else "user disabled" if row else "no such user")
        with self._connection() as cur:
            if _hasher.check_needs_rehash(stored):
                cur.execute("update users set password_hash = %s where username = %s",
                            (hash_password(password), username))
            cur.execute("update users set last_login_at = %s where username = %s", (now, username))
            cur.execute("select key from login_throttle where key = any(%s) order by key for update",
                        (list(keys),))                  # in key order, as _reserve takes them: no deadlock
            cur.execute("update login_throttle set failures = case when key = %s then 0 else greatest(failures - 1, 0) "
                        "end, locked_until = case when key = %s then null else locked_until end where key = any(%s)",
                        (keys[0], keys[0], list(keys)))       # the pair starts over; the others get theirs back
            identity = _identity(username, row[1], row[2], row[0], None, None)
            session_id, session = self._new_session(cur, identity, "username", username, now, self.policy.idle,
                                                    self.policy.absolute, source_address, user_agent)
        return Login(True, "signed in", session_id, session)

    def _reserve(self, cur, keys: tuple[str, str, str], username: str, address: str, now: datetime) -> str | None:
        """Count this attempt against its three budgets (`reserve`), or say which refuses it. The
        rows are locked (in key order: no deadlock) until the caller's transaction commits, so
        attempts at once are counted one after the other."""
        cur.execute("insert into login_throttle (key, failures, window_start) select k, 0, %s "
                    "from unnest(%s::text[]) as k order by k on conflict (key) do nothing", (now, sorted(keys)))
        cur.execute("select key, failures, window_start, locked_until from login_throttle where key = any(%s) "
                    "order by key for update", (list(keys),))
        found = {key: Budget(*rest) for key, *rest in cur.fetchall()}

        def known_address() -> bool:
            cur.execute("select exists (select 1 from sessions where username = %s and source_address = %s "
                        "and created_at > %s)", (username, address, now - self.policy.known_address_for))
            return cur.fetchone()[0]

        refused, counted = reserve(*(found[k] for k in keys), known_address, self.policy, now)
        if refused is None:
            cur.executemany("update login_throttle set failures = %s, window_start = %s, locked_until = %s "
                            "where key = %s", [(b.attempts, b.window_start, b.wait_until, k)
                                               for k, b in zip(keys, counted, strict=True)])
        return refused

    # --- sessions ------------------------------------------------------------------------------
    @staticmethod
    def _new_session(cur, identity: Identity, column: str, owner, now: datetime, idle: timedelta,
                     absolute: timedelta, source_address: str | None, user_agent: str | None) -> tuple[str, Session]:
        """(the id for the cookie, the session)."""
        session_id = secrets.token_urlsafe(32)
        cur.execute(f"insert into sessions (id_hash, {column}, created_at, last_seen_at, expires_at, idle_s, "
                    "source_address, user_agent) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (_digest(session_id), owner, now, now, now + absolute, int(idle.total_seconds()),
                     source_address, (user_agent or "")[:300]))
        wall_token_id = owner if column == "wall_token_id" else None
        return session_id, Session(_digest(session_id), identity, wall_token_id, now + absolute)

    def session(self, session_id: str, now: datetime, touch: bool = True) -> Session | None:
        """The live session with this id, or None (unknown, ended, expired, its user disabled or
        its token revoked). `touch`: it was used now (idle time starts again)."""
        id_hash = _digest(session_id)
        clock = time.monotonic()
        with self._cache_lock:
            cached = self._cache.get(id_hash)
        fresh = cached is not None and clock - cached[1] < self.CHECK_EVERY_S and now < cached[0].expires_at
        if fresh and (not touch or clock - cached[2] < self.TOUCH_EVERY_S):
            return cached[0]
        found = self._look_up(id_hash, now, touch)
        with self._cache_lock:
            if found is None:
                self._cache.pop(id_hash, None)
            else:
                touched = clock if touch or cached is None else cached[2]
                self._cache[id_hash] = (found, clock, touched)
            if len(self._cache) > 10_000:
                self._cache.clear()
        return found

    def forget(self, id_hash: str | None = None) -> None:
        with self._cache_lock:
            if id_hash is None:
                self._cache.clear()
            else:
                self._cache.pop(id_hash, None)

    def _look_up(self, id_hash: str, now: datetime, touch: bool) -> Session | None:
        with self._connection() as cur:
            cur.execute("select s.username, u.role, u.scope_code, u.display_name, t.name, t.scope_code, "
                        f"s.wall_token_id, s.expires_at, {_ENDED_WHY} " + _SESSION_JOINS +
                        "where s.id_hash = %(id)s and s.ended_at is null", {"id": id_hash, "now": now})
            row = cur.fetchone()
            if row is None:
                return None
            token_id, expires_at, why = row[6:]
            if why is not None:
                cur.execute("update sessions set ended_at = %s, ended_why = %s where id_hash = %s", (now, why, id_hash))
                return None
            if touch:
                cur.execute("update sessions set last_seen_at = %s where id_hash = %s", (now, id_hash))
                if token_id:
                    cur.execute("update wall_tokens set last_seen_at = %s where id = %s", (now, token_id))
        return Session(id_hash, _identity(*row[:6]), token_id, expires_at)

    def keep_alive(self, id_hashes: list[str], now: datetime) -> set[str]:
        """The open screens' sessions (by hash): an open screen is in use, so each live one is
        touched (its idle time starts again, and its wall token's last-seen time); the live ones."""
        if not id_hashes:
            return set()
        with self._connection() as cur:
            cur.execute("select s.id_hash, s.wall_token_id " + _SESSION_JOINS +
                        f"where s.id_hash = any(%(ids)s) and s.ended_at is null and {_ENDED_WHY} is null",
                        {"ids": id_hashes, "now": now})
            live = cur.fetchall()
            cur.execute("update sessions set last_seen_at = %s where id_hash = any(%s)", (now, [r[0] for r in live]))
            cur.execute("update wall_tokens set last_seen_at = %s where id = any(%s)",
                        (now, sorted({r[1] for r in live if r[1]})))
        return {r[0] for r in live}

    def logout(self, session_id: str, now: datetime, everywhere: bool = False) -> Session | None:
        """End this session (or every session of its user or wall token); the session that was."""
        found = self.session(session_id, now, touch=False)
        self.forget()     # this process's sessions are looked up again (all of them: `everywhere`)
        with self._connection() as cur:
            cur.execute("update sessions set ended_at = %s, ended_why = 'logout' "
                        "where id_hash = %s and ended_at is null", (now, _digest(session_id)))
            if everywhere and found is not None and found.wall_token_id is None:
                end_sessions(cur, "username", found.identity.user, now, "logout everywhere")
        return found


    # --- wall tokens ---------------------------------------------------------------------------
    def create_wall_token(self, name: str, scope_code: str, created_by: str) -> tuple[int, str]:
        """(id, the token): the token is shown this once and never stored."""
        with self._connection() as cur:
            token_id, token, _ = insert_wall_token(cur, name, scope_code, created_by)
        return token_id, token

    def revoke_wall_token(self, token_id: int, revoked_by: str, now: datetime) -> bool:
        with self._connection() as cur:
            found = update_revoked(cur, token_id, revoked_by, now)
        self.forget()
        return found

    def wall_tokens(self) -> list[dict]:
        return self._rows("select id, name, scope_code, created_at, created_by, revoked_at, revoked_by, "
                          "last_seen_at from wall_tokens order by id")

    def open_with_token(self, token: str, source_address: str | None, user_agent: str | None,
                        now: datetime) -> Login:
        """A wall screen's token: a new long session for its scope, or why not."""
        with self._connection() as cur:
            cur.execute("select id, name, scope_code, revoked_at from wall_tokens where token_hash = %s",
                        (_digest(token),))
            row = cur.fetchone()
            if row is None or row[3] is not None:
                return Login(False, "revoked token" if row else "unknown token")
            cur.execute("update wall_tokens set last_seen_at = %s where id = %s", (now, row[0]))
            session_id, session = self._new_session(cur, _identity(None, None, None, None, row[1], row[2]),
                                                    "wall_token_id", row[0], now, self.policy.wall_idle,
                                                    self.policy.wall_absolute, source_address, user_agent)
        return Login(True, "wall token", session_id, session)

    # --- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _connection(self):
        """A cursor in one transaction on a pooled connection (committed unless the block raised);
        waits up to 30 s for a free connection."""
        try:
            conn = self._pool.getconn()
        except PoolError:
            raise TimeoutError("no database connection for the logins within 30 s") from None
        broken = False
        try:
            with conn, conn.cursor() as cur:     # commit, or roll back on an exception
                yield cur
        except Exception:
            broken = conn.closed != 0
            raise
        finally:
            self._pool.putconn(conn, close=broken)


# --- the changes, each on a cursor in the caller's transaction ---------------------------------------
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,39}$")     # as the users table checks it


def insert_user(cur, username: str, display_name: str, role: UserRole, scope_code: str, password_hash: str,
                created_by: str) -> bool:
    """A new user (False: the username is taken)."""
    if not USERNAME.match(username):
        raise ValueError(f"{username!r} is not a username (2-40 of a-z 0-9 . _ -, starting with a letter or digit)")
    display_name = freetext.clean(display_name, freetext.NAME, "a display name", required=True)
    cur.execute("insert into users (username, display_name, role, scope_code, password_hash, created_by) "
                "values (%s, %s, %s, %s, %s, %s) on conflict (username) do nothing",
                (username, display_name, UserRole(role).value, scope_code, password_hash, created_by))
    return cur.rowcount == 1


def update_password(cur, username: str, password_hash: str, now: datetime) -> bool:
    """A new password hash; every session of the user ends (False: no such user)."""
    cur.execute("update users set password_hash = %s, password_changed_at = %s where username = %s",
                (password_hash, now, username))
    found = cur.rowcount == 1
    end_sessions(cur, "username", username, now, "password changed")
    return found


def update_disabled(cur, username: str, disabled: bool, now: datetime) -> bool:
    """Disable (every session ends) or enable a user (False: no such user)."""
    cur.execute("update users set disabled = %s where username = %s", (disabled, username))
    found = cur.rowcount == 1
    if disabled:
        end_sessions(cur, "username", username, now, "user disabled")
    return found


def insert_wall_token(cur, name: str, scope_code: str, created_by: str) -> tuple[int, str, str]:
    """(id, the token, the name as stored): the token is shown this once and never stored.
    ValueError: the name is not one (2 to 100 characters of one line, say where the screen hangs)."""
    name = freetext.clean(name, freetext.NAME, "a wall screen's name", required=True)
    if len(name) < 2:
        raise ValueError("a wall screen's name has at least 2 characters (say where the screen hangs)")
    token = secrets.token_urlsafe(32)
    cur.execute("insert into wall_tokens (name, scope_code, token_hash, created_by) values (%s, %s, %s, %s) "
                "returning id", (name, scope_code, _digest(token), created_by))
    return cur.fetchone()[0], token, name


def update_revoked(cur, token_id: int, revoked_by: str, now: datetime) -> bool:
    """Revoke a live token; its screens' sessions end (False: no such live token)."""
    cur.execute("update wall_tokens set revoked_at = %s, revoked_by = %s where id = %s and revoked_at is null",
                (now, revoked_by, token_id))
    found = cur.rowcount == 1
    end_sessions(cur, "wall_token_id", token_id, now, "token revoked")
    return found


def end_sessions(cur, column: str, owner, now: datetime, why: str) -> None:
    cur.execute(f"update sessions set ended_at = %s, ended_why = %s where {column} = %s and ended_at is null",
                (now, why, owner))
