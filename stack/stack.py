"""The local stack: Mosquitto, Redis and PostgreSQL+TimescaleDB, started by the project.

Used by `make demo` (fixed ports from the settings when free, data in .data/) and by the test
fixtures (free ports, data in a temp dir). Demo credentials are generated on first start into the
data dir (git-ignored, mode 0600) and reused afterwards; nothing secret is in the repository.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import stat
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from core.lifecycle import raise_open_file_limit
from database import roles
from registry.dynsec import BrokerAccount, DynsecControl, create_commands, role_commands
from telemetry.topics import DEVICE_KINDS, AccountKind

from .mosquitto import DYNSEC_FILE, MosquittoServer
from .postgres import PostgresServer
from .process import ManagedServer, RunAs, reachable_by, running_as_root, untrusted_reason, write_private
from .redis_server import RedisServer

PG_SUPERUSER = "gridcc"
PG_DATABASE = "gridcc"
INGEST_WORKERS = 2     # the demo's ingest workers: ingest-1, ingest-2, each with its own account
SERVICE_ACCOUNTS = (("broker-admin", AccountKind.BROKER_ADMIN), ("broker-health", AccountKind.HEALTH),
                    ("dispatch", AccountKind.DISPATCH), ("cases", AccountKind.CASES),
                    ("handheld-bridge", AccountKind.HANDHELD_BRIDGE),     # python -m handheld.bridge
                    *((f"ingest-{i}", AccountKind.INGEST) for i in range(1, INGEST_WORKERS + 1)))
CONTROL_BATCH = 50     # more new accounts than this at once: rewrite the broker's file and restart it
APPS = ("ingest", "dashboard", "cases")        # the apps with a database role and a Redis user of their own
APP_ROLES = {"ingest": roles.INGEST, "dashboard": roles.DASHBOARD, "cases": roles.CASES}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class UntrustedDataDir(RuntimeError):
    """The data dir, or a directory above it, is not ours alone (process.untrusted_reason)."""


def _still_ours(base: Path, path: Path, run_as: RunAs | None) -> bool:
    """A recorded /var/tmp directory is reused only if it is a real directory (no symlink) owned
    by root, not writable by others, and its service directory (if there) belongs to the service:
    root never chowns through a path someone else could have swapped."""
    try:
        base_st = os.lstat(base)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(base_st.st_mode) or base_st.st_uid != 0 or base_st.st_mode & 0o022:
        return False
    if not os.path.lexists(path):
        return True
    st = os.lstat(path)
    return stat.S_ISDIR(st.st_mode) and (run_as is None or st.st_uid == run_as.uid)


class LocalStack:
    def __init__(self, data_dir: Path, *, mqtt_port: int | None = None,
                 redis_port: int | None = None, pg_port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        reason = untrusted_reason(self.data_dir)
        if reason is not None:
            raise UntrustedDataDir(f"refusing data dir {self.data_dir}: {reason}")
        # private to us; when root, the service accounts may pass through to their own dirs
        self.data_dir.chmod(0o711 if running_as_root() else 0o700)
        self.log_dir = self.data_dir / "logs"
        self.run_dir = self.data_dir / "run"
        for private in (self.log_dir, self.run_dir):   # logs may say more than they should; pids ours
            private.mkdir(mode=0o700, exist_ok=True)
            private.chmod(0o700)
        self._secrets = self._load_or_create_secrets()
        self.accounts = self._load_or_create_accounts()

        mosquitto_user = RunAs.for_service("mosquitto")
        redis_user = RunAs.for_service("redis")
        pg_user = RunAs.for_service("postgres")
        self.mosquitto = MosquittoServer(
            self._service_dir("mosquitto", mosquitto_user), mqtt_port or free_port(),
            mosquitto_user, self.log_dir, self.run_dir, health_account=self.accounts["broker-health"])
        self.redis = RedisServer(
            self._service_dir("redis", redis_user), redis_port or free_port(),
            self._secrets["redis_password"], redis_user, self.log_dir, self.run_dir,
            app_users={APP_ROLES[app]: self.app_secret("redis", app) for app in APPS})
        self.postgres = PostgresServer(
            self._service_dir("postgres", pg_user), pg_port or free_port(), PG_SUPERUSER,
            self._secrets["pg_password"], PG_DATABASE, pg_user, self.log_dir, self.run_dir)
        self._started: list = []

    # --- directories and credentials ----------------------------------------------------------
    def _service_dir(self, name: str, run_as: RunAs | None) -> Path:
        """`<data_dir>/<name>`, or when the service account cannot reach the data dir (root's
        home, pytest's private temp dirs) a private directory that root creates under /var/tmp
        (mkdtemp: a name nobody could have prepared), recorded in `<name>.location` and reused
        only while it is still ours (`_still_ours`)."""
        if reachable_by(self.data_dir, run_as):
            path = self.data_dir / name
        else:
            location = self.data_dir / f"{name}.location"
            recorded = Path(location.read_text().strip()) if location.exists() else None
            if recorded is not None and _still_ours(recorded.parent, recorded, run_as):
                path = recorded
            else:
                base = Path(tempfile.mkdtemp(prefix="gridcc-", dir="/var/tmp"))
                base.chmod(0o711)          # the service account passes through to its own dir
                path = base / name
                write_private(location, f"{path}\n")
        path.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            run_as.own_dir(path)
        return path

    def _load_or_create_secrets(self) -> dict[str, str]:
        """The servers' passwords: the owner's (PostgreSQL, Redis's default user) and each app's own
        role; ones missing from an older data dir are added."""
        path = self.data_dir / "secrets.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        wanted = ("redis_password", "pg_password", "dashboard_session_key",
                  *(f"{server}_{app}_password" for server in ("pg", "redis") for app in APPS))
        created = {**{name: secrets.token_urlsafe(24) for name in wanted},
                   "ledger_key": secrets.token_urlsafe(32),     # the ledger's personal data (ledger/privacy.py)
                   **stored}
        if created != stored:
            self._save_secrets(created)
        return created

    def _save_secrets(self, values: dict[str, str] | None = None) -> None:
        write_private(self.data_dir / "secrets.json", json.dumps(values or self._secrets, indent=2))

    def app_secret(self, server: str, app: str) -> str:
        return self._secrets[f"{server}_{app}_password"]

    def demo_passwords(self, usernames: list[str]) -> dict[str, str]:
        """The local demo's passwords of its demo logins (generated once, kept in secrets.json)."""
        keys = {name: f"demo_login_{name}" for name in usernames}
        missing = [key for key in keys.values() if key not in self._secrets]
        if missing:
            self._secrets.update({key: secrets.token_urlsafe(12) for key in missing})
            self._save_secrets()
        return {name: self._secrets[key] for name, key in keys.items()}

    def pg_app_passwords(self) -> dict[str, str]:
        """Role name -> password of each app's database role (database.roles)."""
        return {APP_ROLES[app]: self.app_secret("pg", app) for app in APPS}

    @property
    def accounts_path(self) -> Path:
        return self.data_dir / "broker-accounts.json"

    def _load_or_create_accounts(self) -> dict[str, BrokerAccount]:
        accounts: dict[str, BrokerAccount] = {}
        if self.accounts_path.exists():
            for item in json.loads(self.accounts_path.read_text()):
                account = BrokerAccount(item["username"], item["password"], AccountKind(item["kind"]),
                                        disabled=item.get("disabled", False), org=item.get("org", ""))
                accounts[account.username] = account
        for username, kind in SERVICE_ACCOUNTS:
            accounts.setdefault(username, BrokerAccount.generate(username, kind))
        self._save_accounts(accounts)
        return accounts

    def _save_accounts(self, accounts: dict[str, BrokerAccount]) -> None:
        items = [{**asdict(a), "kind": a.kind.value} for a in accounts.values()]
        write_private(self.accounts_path, json.dumps(items, indent=1))

    def add_broker_accounts(self, new_accounts: list[BrokerAccount]) -> None:
        """Register device or service accounts (saved, and given to the broker)."""
        self.accounts = self._load_or_create_accounts()   # the file may have changed (disable-account)
        fresh = [a for a in new_accounts if a.username not in self.accounts]
        for account in new_accounts:
            self.accounts[account.username] = account
        self._save_accounts(self.accounts)
        self._to_running_broker(fresh, create_commands)

    def set_account_disabled(self, username: str, disabled: bool = True) -> None:
        """Revoke an account (a lost or stolen handset, a retired gateway) or restore it. A running
        broker refuses its logins at once and drops its connection ($CONTROL disableClient); the
        account stays refused across restarts (broker-accounts.json and the plugin's file record
        it), and the OwnTracks HTTP endpoint, which checks the plugin's file, refuses it as well.
        Works on a broker another process started (`python -m stack disable-account`)."""
        self.accounts = self._load_or_create_accounts()
        self.accounts[username] = replace(self.accounts[username], disabled=disabled)
        self._save_accounts(self.accounts)
        if not (self.mosquitto.running or self.mosquitto.answering()):
            self.mosquitto.set_disabled_in_file(username, disabled)
            return
        control = DynsecControl(self.mosquitto.port, self.accounts["broker-admin"])
        try:
            control.send([{"command": "disableClient" if disabled else "enableClient", "username": username}])
        finally:
            control.close()

    def service_account(self, kind: AccountKind, username: str) -> BrokerAccount:
        """A service account of this kind (an extra ingest worker, a test's probe), created if new."""
        if username not in self.accounts:
            self.add_broker_accounts([BrokerAccount.generate(username, kind)])
        return self.accounts[username]

    def register_devices(self, city) -> int:
        """Give every terminal and gateway of the city file a broker account (existing ones keep
        their password and their grid: the registry may have moved them since, and
        `follow_registry` brings the accounts to what the database says); returns how many were
        new. An account from before terminals had a grid gets its grid."""
        wanted = [(m.terminal_id, AccountKind.TERMINAL, m.grid_code) for m in city.members] + \
                 [(g.gateway_id, AccountKind.GATEWAY, "") for g in city.gateways]
        new = [BrokerAccount.generate(name, kind, org) for name, kind, org in wanted if name not in self.accounts]
        gridless = [replace(self.accounts[name], org=org) for name, kind, org in wanted
                    if kind is AccountKind.TERMINAL and name in self.accounts and not self.accounts[name].org]
        if new:
            self.add_broker_accounts(new)
        if gridless:
            self.change_broker_accounts(gridless)
        return len(new)

    def follow_registry(self, grids: dict[str, str], retired_devices: set[str]) -> tuple[int, int]:
        """Bring the stack's own device accounts to the registry as the database holds it
        (database.citydb.device_accounts): a terminal whose member was moved at run time keeps its
        new grid's rules (`grids`: terminal -> grid), a retired device stays disabled, though the
        city file still says otherwise. (Accounts the registry created at run time are the broker's
        alone; its file keeps them as they are.) `retired_devices`: the retired terminals, phones
        and gateways (not sensors: their ids are no broker accounts, and may be anything). Returns
        (accounts given their grid anew, disabled)."""
        moved = [replace(a, org=grids[name]) for name, a in self.accounts.items()
                 if a.kind is AccountKind.TERMINAL and grids.get(name) and a.org != grids[name]]
        if moved:
            self.change_broker_accounts(moved)
        retired = [name for name in retired_devices if name in self.accounts and not self.accounts[name].disabled
                   and self.accounts[name].kind in DEVICE_KINDS]      # never a service account of ours
        for name in retired:
            self.set_account_disabled(name, True)
        return len(moved), len(retired)

    def change_broker_accounts(self, changed: list[BrokerAccount]) -> None:
        """Accounts whose rules changed (a terminal's grid): saved, and a running broker's roles
        rewritten (over $CONTROL for a few; a bulk by rewriting its file and restarting it)."""
        self.accounts = self._load_or_create_accounts()
        for account in changed:
            self.accounts[account.username] = account
        self._save_accounts(self.accounts)
        self._to_running_broker(changed, role_commands)

    def _to_running_broker(self, accounts: list[BrokerAccount], commands) -> None:
        """A running broker takes a few accounts' `commands` over $CONTROL at once; a bulk goes in by
        rewriting its file and restarting it (the plugin rewrites its whole file after every
        command: thousands of them would take minutes). Not running: it reads them at its start."""
        if not self.mosquitto.running or not accounts:
            return
        if len(accounts) > CONTROL_BATCH:
            self.mosquitto.stop()
            self.mosquitto.write_accounts(list(self.accounts.values()))
            self.mosquitto.start()
            return
        control = DynsecControl(self.mosquitto.port, self.accounts["broker-admin"])
        try:
            control.send([command for account in accounts for command in commands(account)])
        finally:
            control.close()

    def account(self, username: str) -> BrokerAccount:
        return self.accounts[username]

    # --- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start every server in order, each healthy before the next; on a failure stop those
        started so far (including the one that failed, which may be running but unhealthy)."""
        raise_open_file_limit()
        self.mosquitto.write_accounts(list(self.accounts.values()))
        try:
            for server in self.servers():
                self._started.append(server)
                server.start()
        except BaseException:
            self.stop()
            raise
        write_private(self.data_dir / "stack.env", self.env_file_text())

    def stop(self) -> None:
        """Stop the servers in reverse order of starting."""
        while self._started:
            self._started.pop().stop()

    def servers(self) -> list[ManagedServer]:
        """The servers in the order they start: each one's clients come later."""
        return [self.postgres, self.redis, self.mosquitto]

    def remove_data(self) -> None:
        """Delete everything this stack wrote (tests use this; the demo keeps its data)."""
        for server in self.servers():
            if not str(server.data_dir).startswith(str(self.data_dir)):
                shutil.rmtree(server.data_dir.parent, ignore_errors=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # --- what clients need ----------------------------------------------------------------------
    def public_env(self) -> dict[str, str]:
        """Where things are: the settings with no secret in them (what stack.env holds)."""
        return {
            "GCC_DATA_DIR": str(self.data_dir),
            "GCC_MQTT_HOST": "127.0.0.1",
            "GCC_MQTT_PORT": str(self.mosquitto.port),
            "GCC_BROKER_CREDENTIALS_FILE": str(self.mosquitto.data_dir / DYNSEC_FILE),
            "GCC_REDIS_HOST": "127.0.0.1",
            "GCC_REDIS_PORT": str(self.redis.port),
            "GCC_PG_HOST": "127.0.0.1",
            "GCC_PG_PORT": str(self.postgres.port),
            "GCC_PG_DATABASE": PG_DATABASE,
        }

    def env(self) -> dict[str, str]:
        """The settings of the stack's owner: the database owner, Redis's default user, the first
        ingest worker's broker account (tests and tools; the apps get `app_env`)."""
        return {**self.public_env(), **self.mqtt_env(self.accounts["ingest-1"]), **self.broker_admin_env(),
                "GCC_REDIS_USERNAME": "default", "GCC_REDIS_PASSWORD": self._secrets["redis_password"],
                "GCC_PG_USER": PG_SUPERUSER, "GCC_PG_PASSWORD": self._secrets["pg_password"]}

    def app_env(self, app: str, account: BrokerAccount | None = None) -> dict[str, str]:
        """What one app needs and nothing more: where things are, and its own database role, Redis
        user and (if it uses the broker) broker account."""
        env = {**self.public_env(), "GCC_PG_USER": APP_ROLES[app], "GCC_PG_PASSWORD": self.app_secret("pg", app),
               "GCC_REDIS_USERNAME": APP_ROLES[app], "GCC_REDIS_PASSWORD": self.app_secret("redis", app)}
        if app == "dashboard":   # admins add devices from the page: their accounts follow at once
            env["GCC_DASHBOARD_SECRET_KEY"] = self._secrets["dashboard_session_key"]
            env.update(self.broker_admin_env())
        if app in ("ingest", "dashboard"):   # members' registrations sealed as they arrive; unmasked views
            env["GCC_LEDGER_KEY"] = self._secrets["ledger_key"]
        return {**env, **self.mqtt_env(account)} if account else env

    def broker_admin_env(self) -> dict[str, str]:
        """The registry's broker admin (the dashboard's admin page, `python -m stack devices`)."""
        admin = self.accounts["broker-admin"]
        return {"GCC_BROKER_ADMIN_USERNAME": admin.username, "GCC_BROKER_ADMIN_PASSWORD": admin.password}

    @staticmethod
    def mqtt_env(account: BrokerAccount) -> dict[str, str]:
        """The settings that make a process of ours log in to the broker as `account`."""
        return {"GCC_MQTT_USERNAME": account.username, "GCC_MQTT_PASSWORD": account.password}

    def env_file_text(self) -> str:
        lines = ["# Written by stack for the local demo stack: where things are. The passwords are in",
                 "# secrets.json and broker-accounts.json beside it (demo credentials only); each app gets",
                 "# only its own, in its environment."]
        lines += [f"{key}={value}" for key, value in self.public_env().items()]
        return "\n".join(lines) + "\n"

    def app_settings(self, app: str, account: BrokerAccount | None = None):
        """What `app` would read from its environment (its own roles and accounts only)."""
        from config.settings import Settings

        values = {key[len("GCC_"):].lower(): value for key, value in self.app_env(app, account).items()}
        return Settings(_env_file=None, **values)

    def settings(self, **overrides):
        from config.settings import Settings

        values = {key[len("GCC_"):].lower(): value for key, value in self.env().items()}
        values.update(overrides)
        return Settings(_env_file=None, **values)
