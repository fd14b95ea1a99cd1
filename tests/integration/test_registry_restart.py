"""A demo restart keeps what the registry changed while it ran (issue 14): the city file still has
the member in their old grid and the device active, but the database is the registry's record,
and the broker's accounts follow it (stack.apps.follow_registry), on a stack of its own stopped
and started again as `make demo` does it."""
from __future__ import annotations

import tempfile
from pathlib import Path

from database.migrate import migrate
from registry.broker import BrokerAdmin
from registry.store import Actor, DeviceRegistry
from stack import LocalStack
from stack.apps import demo_city, follow_registry, load_into_database
from stack.mosquitto import mqtt_connect_reason
from telemetry.topics import org_topic

from .conftest import demo_city as generated_city
from .ingest_helpers import owner_rows
from .mqtt_helpers import MqttProbe


def _reason_to_read(stack: LocalStack, account, topic: str) -> str:
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    try:
        assert probe.connect_reason == "Success", probe.connect_reason
        return probe.subscribe(topic)
    finally:
        probe.close()


def test_a_restart_keeps_moved_members_in_their_new_grid_and_retired_devices_refused():
    data_dir = Path(tempfile.mkdtemp(prefix="gridcc-restart-"))
    data_dir.chmod(0o711)
    generated_city().save(data_dir / "city.json")
    local = LocalStack(data_dir)
    try:
        city = demo_city(local)                     # as `make demo` starts: accounts, broker, database
        local.start()
        dsn = local.settings().pg_dsn
        migrate(dsn)
        load_into_database(city, dsn)
        follow_registry(local, dsn)
        moved, retired = city.members[0], city.members[1]
        new_grid = next(g.code for g in city.grids if g.community_code != moved.grid_code[:12])
        registry = DeviceRegistry(dsn, BrokerAdmin.from_settings(local.settings()))
        registry.move_member(Actor("test:restart"), moved.member_id, new_grid)
        registry.retire_member(Actor("test:restart"), retired.member_id)
        terminal = local.account(moved.terminal_id)
        assert _reason_to_read(local, terminal, org_topic(new_grid)) == "Granted QoS 1"
        local.stop()

        local = LocalStack(data_dir)                # the next `make demo`, the same city file
        city = demo_city(local)
        assert city.member_by_terminal[moved.terminal_id].grid_code == moved.grid_code   # the file's old grid
        local.start()
        dsn = local.settings().pg_dsn               # (new free ports)
        load_into_database(city, dsn)
        follow_registry(local, dsn)
        assert owner_rows(local, "select grid_code from members where member_id = %s", moved.member_id) == \
            [(new_grid,)]
        assert _reason_to_read(local, terminal, org_topic(new_grid)) == "Granted QoS 1"
        assert _reason_to_read(local, terminal, org_topic(moved.grid_code)) == "Not authorized"
        assert mqtt_connect_reason("127.0.0.1", local.mosquitto.port, local.account(retired.terminal_id)) == \
            "Not authorized"
        assert local.account(moved.terminal_id).org == new_grid       # and so the start after this one
    finally:
        local.stop()
        local.remove_data()
