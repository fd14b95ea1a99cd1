"""`python -m registry.devices …`: the registry from the command line (the admin page does the same).

    add-member M-1 --name 王芳 --role grid_administrator --grid 350102002003001 --terminal T-M-1
    add-device M-1 --kind owntracks --id ot-m-1 [--label "work phone"] [--otrc FILE] [--qr FILE.png]
    change-member M-1 [--name …] [--role …]      move-member M-1 --grid 350102002003002
    replace-terminal M-1 --terminal T-M-1b       retire-member M-1      retire-device ot-m-1
    rotate DEVICE [--otrc FILE] [--qr FILE.png]  revoke DEVICE
    enrol-handheld M-1 [--label "Wang's phone"]  (a phone with the handheld app: its one-time link)
    add-gateway GW-9 --kind building_gateway --building B-… [--protocol senml]
    move-gateway GW-9 --building B-…             retire-gateway GW-9
    add-sensor urn:dev:ow:10e2073a01080063 --kind temperature --gateway GW-9 [--building B-…]
    move-sensor SENSOR --building B-… [--gateway GW-…]    retire-sensor SENSOR
    import-members FILE.csv                      import-boundaries FILE.geojson
    export-boundaries CODE [--out FILE.geojson]   (a community's grids, a street's communities)
    sync-roles      every account's broker role as today's rules derive it (after an upgrade
                    that adds a message kind; changes only the roles that differ)

A new device's password is printed once (and written into the OwnTracks configuration when asked);
the broker keeps only its hash. Settings come from the environment (GCC_PG_*, GCC_MQTT_HOST/PORT,
GCC_BROKER_ADMIN_USERNAME/PASSWORD); on the local demo, `python -m stack devices …` sets them.
Every change is audited as the user running the command (`cli:<user>`).
"""
from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

import psycopg2

from core.city import MemberDeviceKind
from registry.broker import BrokerAdmin, RoleSync
from registry.dynsec import BrokerAccount
from registry.store import ACCOUNT_KINDS, Actor, Credential, DeviceRegistry, RegistryError
from telemetry.topics import AccountKind


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m registry.devices", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, *positional: str):
        p = sub.add_parser(name)
        for arg in positional:
            p.add_argument(arg)
        return p

    def onboarding(p):
        p.add_argument("--otrc", type=Path, help="write the OwnTracks app's configuration here (.otrc)")
        p.add_argument("--qr", type=Path, help="write a QR code of it here (PNG), for the app to scan")
        p.add_argument("--mode", choices=("mqtt", "http"), default="mqtt", help="the app's connection mode")

    p = command("add-member", "member_id")
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True)
    p.add_argument("--grid", required=True)
    p.add_argument("--terminal", required=True, help="the id of the member's dedicated terminal")
    p = command("add-device", "member_id")
    p.add_argument("--kind", required=True, choices=("terminal", "owntracks", "osmand"))
    p.add_argument("--id", required=True, dest="device_id")
    p.add_argument("--label", default="")
    onboarding(p)
    p = command("change-member", "member_id")
    p.add_argument("--name")
    p.add_argument("--role")
    command("move-member", "member_id").add_argument("--grid", required=True)
    command("replace-terminal", "member_id").add_argument("--terminal", required=True)
    command("retire-member", "member_id")
    command("retire-device", "device_id")
    command("enrol-handheld", "member_id").add_argument("--label", default="")
    onboarding(command("rotate", "device_id"))
    command("revoke", "device_id")
    p = command("add-gateway", "gateway_id")
    p.add_argument("--kind", required=True)
    p.add_argument("--building", required=True)
    p.add_argument("--protocol", default="senml", choices=("senml", "json"))
    command("move-gateway", "gateway_id").add_argument("--building", required=True)
    command("retire-gateway", "gateway_id")
    p = command("add-sensor", "sensor_id")
    p.add_argument("--kind", required=True)
    p.add_argument("--gateway", required=True)
    p.add_argument("--building")
    p = command("move-sensor", "sensor_id")
    p.add_argument("--building", required=True)
    p.add_argument("--gateway")
    command("retire-sensor", "sensor_id")
    command("import-members", "path")
    command("import-boundaries", "path")
    command("export-boundaries", "parent_code").add_argument("--out", type=Path, help="write it here (else stdout)")
    command("sync-roles")
    return parser


def registry_accounts(dsn: str) -> list[BrokerAccount]:
    """Every broker account the registry knows and still uses, with what its rules derive from
    (no password): each active member device's (a terminal's grid is its member's) and each
    active gateway's. Retired ones are left out: their accounts are disabled for good; so are
    handhelds, which have no broker account (they speak HTTPS)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select d.device_id, d.kind, m.grid_code from member_devices d "
                        "join members m using (member_id) where d.retired_at is null and m.retired_at is null "
                        "and d.kind <> %s", (MemberDeviceKind.HANDHELD.value,))
            devices = cur.fetchall()
            cur.execute("select gateway_id from gateways where retired_at is null")
            gateways = cur.fetchall()
    finally:
        conn.close()
    accounts = []
    for device_id, kind, grid_code in devices:
        account_kind = ACCOUNT_KINDS[MemberDeviceKind(kind)]
        accounts.append(BrokerAccount(device_id, "", account_kind,
                                      org=grid_code if account_kind is AccountKind.TERMINAL else ""))
    return accounts + [BrokerAccount(gateway_id, "", AccountKind.GATEWAY) for (gateway_id,) in gateways]


def sync_roles(dsn: str, broker: BrokerAdmin | None) -> RoleSync:
    """Every account the registry knows given the broker role today's rules derive, where the
    broker's differs (`BrokerAdmin.sync_roles`); run after an upgrade that adds a message kind."""
    if broker is None:
        raise RegistryError("no broker admin is configured (GCC_BROKER_ADMIN_USERNAME, GCC_BROKER_ADMIN_PASSWORD)")
    return broker.sync_roles(registry_accounts(dsn))


def describe(synced: RoleSync) -> str:
    """One line on what a sync did, for the operator and the stack's log."""
    line = f"broker roles: {len(synced.changed)} given their rules anew, {synced.unchanged} in line already"
    if synced.missing:
        shown = ", ".join(synced.missing[:10]) + (" …" if len(synced.missing) > 10 else "")
        line += f"; {len(synced.missing)} the registry knows have no role on the broker ({shown})"
    return line


def _credential(credential: Credential, args, settings) -> None:
    print(f"{credential.device_id}: password {credential.password}")
    print("  (shown once: the broker keeps only its hash; `rotate` makes a new one)")
    if credential.kind.value == "osmand":
        from registry import onboarding

        client = onboarding.traccar_client(credential, settings)
        print(f"  Traccar Client: server URL {client['server_url']}, device identifier {client['device_identifier']}")
    if getattr(args, "otrc", None) or getattr(args, "qr", None):
        from registry import onboarding

        config = onboarding.owntracks_config(credential, settings, mode=args.mode)
        if args.otrc:
            args.otrc.write_bytes(onboarding.otrc(config))
            args.otrc.chmod(0o600)
            print(f"  OwnTracks configuration: {args.otrc} (open it on the phone, or scan the QR code)")
        if args.qr:
            args.qr.write_bytes(onboarding.qr_png(config))
            args.qr.chmod(0o600)
            print(f"  QR code: {args.qr}")


def run(args, registry: DeviceRegistry, actor: Actor, settings) -> int:
    c = args.command
    if c == "add-member":
        _credential(registry.add_member(actor, args.member_id, args.name, args.role, args.grid, args.terminal),
                    args, settings)
    elif c == "add-device":
        _credential(registry.add_device(actor, args.member_id, args.kind, args.device_id, args.label), args, settings)
    elif c == "change-member":
        registry.change_member(actor, args.member_id, args.name, args.role)
    elif c == "move-member":
        registry.move_member(actor, args.member_id, args.grid)
    elif c == "replace-terminal":
        _credential(registry.replace_terminal(actor, args.member_id, args.terminal), args, settings)
    elif c == "retire-member":
        registry.retire_member(actor, args.member_id)
    elif c == "retire-device":
        registry.retire_device(actor, args.device_id)
    elif c == "enrol-handheld":
        from registry import onboarding

        enrolment = registry.enrol_handheld(actor, args.member_id, args.label)
        print(f"{enrolment.device_id}: open this link on the member's phone (once, until "
              f"{enrolment.expires_at:%Y-%m-%d %H:%M %Z}):")
        print(f"  {enrolment.link(onboarding.ingest_url(settings))}")
        return 0
    elif c == "rotate":
        _credential(registry.rotate(actor, args.device_id), args, settings)
    elif c == "revoke":
        registry.revoke(actor, args.device_id)
    elif c == "add-gateway":
        _credential(registry.add_gateway(actor, args.gateway_id, args.kind, args.building, args.protocol),
                    args, settings)
    elif c == "move-gateway":
        registry.move_gateway(actor, args.gateway_id, args.building)
    elif c == "retire-gateway":
        registry.retire_gateway(actor, args.gateway_id)
    elif c == "add-sensor":
        registry.add_sensor(actor, args.sensor_id, args.kind, args.gateway, args.building)
    elif c == "move-sensor":
        registry.move_sensor(actor, args.sensor_id, args.building, args.gateway)
    elif c == "retire-sensor":
        registry.retire_sensor(actor, args.sensor_id)
    elif c == "import-members":
        from registry import imports

        try:
            added, stopped = imports.import_members(registry, actor, Path(args.path).read_text(encoding="utf-8")), None
        except imports.ImportStopped as exc:
            added, stopped = exc.added, exc
        for credential in added:
            print(f"{credential.device_id}: password {credential.password}")
        print("(shown once)")
        if stopped is not None:
            raise stopped
        return 0
    elif c == "import-boundaries":
        from registry import boundaries

        print(boundaries.import_boundaries(settings.pg_dsn, actor, Path(args.path).read_bytes())[0])
        return 0
    elif c == "sync-roles":
        print(describe(sync_roles(registry.dsn, registry.broker)))
        return 0
    elif c == "export-boundaries":
        import orjson

        from registry import boundaries

        text = orjson.dumps(boundaries.export_boundaries(settings.pg_dsn, args.parent_code),
                            option=orjson.OPT_INDENT_2).decode()
        if args.out:
            args.out.write_text(text, encoding="utf-8")
        else:
            print(text)
        return 0
    print(f"{c}: done")
    return 0


def main(argv: list[str] | None = None) -> int:
    from config.settings import load_settings

    args = _parser().parse_args(argv)
    settings = load_settings()
    registry = DeviceRegistry(settings.pg_dsn, BrokerAdmin.from_settings(settings))
    try:
        return run(args, registry, Actor(f"cli:{getpass.getuser()}"), settings)
    except RegistryError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
