"""The registry at run time (issue 14), against the real stack: devices added, moved and retired by
the CLI (`python -m registry.devices`, as an operator runs it) while two ingest workers run; they
learn of each change by LISTEN/NOTIFY, without a restart."""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from shapely.geometry import mapping, shape

from config.settings import REPO_ROOT
from registry.dynsec import BrokerAccount
from stack.mosquitto import mqtt_connect_reason
from telemetry.topics import AccountKind

from .. import support
from .ingest_helpers import ThreadWorker, fix_payload, owner_rows
from .mqtt_helpers import MqttProbe


def cli(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "registry.devices", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={**os.environ, **stack.env()}, timeout=60)


def password_of(result: subprocess.CompletedProcess, device_id: str) -> str:
    assert result.returncode == 0, result.stderr
    return re.search(rf"^{re.escape(device_id)}: password (\S+)$", result.stdout, re.M).group(1)


def wait_for(query, *args, stack, timeout: float = 10.0, want=lambda rows: bool(rows)) -> list[tuple]:
    """The rows of a query once they are what `want` says (committed by a worker), or as they are
    after `timeout` seconds (the caller's assertion then shows them)."""
    seen: list[tuple] = []

    def wanted() -> bool:
        seen[:] = owner_rows(stack, query, *args)
        return want(seen)

    with contextlib.suppress(AssertionError):
        support.wait_for(wanted, timeout, query, interval=0.2)
    return list(seen)


def taken_in(workers, sensor_id: str, building_id: str) -> None:
    """Until each worker's registry has the sensor in that building: they read the city again when
    PostgreSQL notifies them of the change (LISTEN/NOTIFY), and the next message is checked against it."""
    support.wait_for(lambda: all(getattr(w.worker.registry.sensors.get(sensor_id), "building_id", None) == building_id
                                 for w in workers), 10, f"the workers to take {sensor_id} in, in {building_id}")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def two_workers(stack, city):
    group = f"reg{uuid.uuid4().hex[:6]}"
    with ThreadWorker(stack, index=71, share_group=group) as one, \
            ThreadWorker(stack, index=72, share_group=group) as two:
        yield one, two


def a_place_in(city, grid_code: str) -> tuple[float, float]:
    point = city.grid_by_code[grid_code].boundary.representative_point()
    return point.x, point.y


def test_a_terminal_added_by_the_cli_reports_at_once_to_two_running_workers(stack, city, two_workers):
    grid = city.grids[3].code
    member, terminal = new_id("M"), new_id("T")
    password = password_of(cli(stack, "add-member", member, "--name", "新 网格员", "--role", "grid_administrator",
                               "--grid", grid, "--terminal", terminal), terminal)
    lon, lat = a_place_in(city, grid)
    probe = MqttProbe(stack.mosquitto.port, terminal, password)
    try:
        assert probe.connect_reason == "Success"
        t0 = datetime.now(timezone.utc).replace(microsecond=0)
        for i in range(6):   # the share group gives each worker some of them
            assert probe.publish(f"gcc/v1/terminal/{terminal}/fix", fix_payload(t0 + timedelta(seconds=i), lon, lat)) \
                == "Success"
    finally:
        probe.close()
    rows = wait_for("select member_id, grid_code from positions where terminal_id = %s", terminal, stack=stack,
                    want=lambda rows: len(rows) == 6)
    assert rows == [(member, grid)] * 6
    assert owner_rows(stack, "select count(*) from dead_letters where topic like %s", f"%/{terminal}/%") == [(0,)]
    assert all(w.worker.metrics.registry_updates._value.get() >= 1 for w in two_workers)
    audit = owner_rows(stack, "select action, outcome, actor from audit_log where target = %s", f"member:{member}")
    assert audit == [("registry.member.add", "done", f"cli:{os.environ.get('USER') or audit[0][2][4:]}")]


def test_a_retired_terminal_is_refused_by_the_broker_and_its_queued_messages_are_dead_lettered(stack, city):
    grid = city.grids[5].code
    member, terminal = new_id("M"), new_id("T")
    password = password_of(cli(stack, "add-member", member, "--name", "退 役", "--role", "grid_coordinator",
                               "--grid", grid, "--terminal", terminal), terminal)
    group = f"ret{uuid.uuid4().hex[:6]}"
    with ThreadWorker(stack, index=73, share_group=group, end_session=False):
        pass        # its session stays: the broker queues what comes for it while it is down
    lon, lat = a_place_in(city, grid)
    probe = MqttProbe(stack.mosquitto.port, terminal, password)
    t0 = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        for i in range(3):
            assert probe.publish(f"gcc/v1/terminal/{terminal}/fix", fix_payload(t0 + timedelta(seconds=i), lon, lat)) \
                == "Success"
        assert cli(stack, "retire-member", member).returncode == 0
        assert probe.disconnected.wait(5)               # the broker dropped it at once
    finally:
        probe.close()
    assert mqtt_connect_reason("127.0.0.1", stack.mosquitto.port,
                               BrokerAccount(terminal, password, AccountKind.TERMINAL)) == "Not authorized"
    with ThreadWorker(stack, index=73, share_group=group):
        rows = wait_for("select reason, detail from dead_letters where topic = %s",
                        f"gcc/v1/terminal/{terminal}/fix", stack=stack, want=lambda rows: len(rows) == 3)
    assert [r[0] for r in rows] == ["retired_device"] * 3
    assert f"of member {member}" in rows[0][1]
    assert owner_rows(stack, "select count(*) from positions where terminal_id = %s", terminal) == [(0,)]


def test_a_moved_sensors_readings_land_in_its_new_grid(stack, city, two_workers):
    gateway = city.gateways[0]
    there = next(b for b in city.buildings if b.grid_code != gateway.grid_code)
    sensor = f"urn:dev:ow:{uuid.uuid4().hex[:16]}"
    assert cli(stack, "add-sensor", sensor, "--kind", "gas_detector", "--gateway", gateway.gateway_id).returncode == 0
    account = stack.account(gateway.gateway_id)
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    topic = f"gcc/v1/gateway/{gateway.gateway_id}/senml"
    try:
        now = datetime.now(timezone.utc).timestamp()
        pack = [{"bn": sensor + ":", "bt": round(now) - 60, "n": "gas_lel", "u": "%", "v": 2.0}]
        taken_in(two_workers, sensor, gateway.building_id)
        assert probe.publish(topic, orjson.dumps(pack)) == "Success"
        assert wait_for("select grid_code from sensor_readings where sensor_id = %s", sensor, stack=stack) == \
            [(gateway.grid_code,)]
        result = cli(stack, "move-sensor", sensor, "--building", there.building_id)
        assert result.returncode == 0, result.stderr
        taken_in(two_workers, sensor, there.building_id)
        pack[0]["bt"] = round(now) - 30
        assert probe.publish(topic, orjson.dumps(pack)) == "Success"
        rows = wait_for("select grid_code, building_id from sensor_readings where sensor_id = %s order by time",
                        sensor, stack=stack, want=lambda rows: len(rows) == 2)
    finally:
        probe.close()
    assert rows == [(gateway.grid_code, gateway.building_id), (there.grid_code, there.building_id)]


def test_a_refused_change_says_why_and_is_audited(stack, city):
    member = new_id("M")
    result = cli(stack, "add-member", member, "--name", "x", "--role", "grid_administrator",
                 "--grid", "999999999999999", "--terminal", new_id("T"))
    assert (result.returncode, "no grid '999999999999999'" in result.stderr) == (2, True), result.stderr
    assert owner_rows(stack, "select outcome, reason from audit_log where target = %s", f"member:{member}") == \
        [("refused", "no grid '999999999999999'")]


def _community_geojson(city, community_code: str, change=None) -> bytes:
    features = [{"type": "Feature", "geometry": mapping(change(g) if change else g.boundary),
                 "properties": {"code": g.code, "name": g.name, "kind": g.kind.value, "households": g.households,
                                "population": g.population}}
                for g in city.grids if g.community_code == community_code]
    return orjson.dumps({"type": "FeatureCollection", "features": features})


def test_a_grid_boundary_import_with_an_overlap_is_refused_naming_the_grids(stack, city, tmp_path):
    community = city.communities[2].code
    grids = [g for g in city.grids if g.community_code == community]
    first, second = grids[0], next(g for g in grids[1:] if g.boundary.touches(grids[0].boundary))
    grown = lambda g: g.boundary.buffer(0.0005) if g.code == first.code else g.boundary   # noqa: E731
    path = tmp_path / "overlap.geojson"
    path.write_bytes(_community_geojson(city, community, grown))
    result = cli(stack, "import-boundaries", str(path))
    assert result.returncode == 2
    assert f"grids {first.code} and {second.code} overlap by" in result.stderr, result.stderr
    stored = owner_rows(stack, "select boundary from grids where code = %s", first.code)[0][0]
    assert shape(stored).equals_exact(first.boundary, 1e-9)   # nothing was stored


def test_a_gap_inside_the_community_is_refused_naming_the_grid_beside_it(stack, city, tmp_path):
    community = city.communities[2].code
    victim = next(g for g in city.grids if g.community_code == community)
    shrunk = lambda g: g.boundary.buffer(-0.0003) if g.code == victim.code else g.boundary   # noqa: E731
    path = tmp_path / "gap.geojson"
    path.write_bytes(_community_geojson(city, community, shrunk))
    result = cli(stack, "import-boundaries", str(path))
    assert (result.returncode, f"near grid {victim.code}" in result.stderr, "a gap of" in result.stderr) == \
        (2, True, True), result.stderr


def test_the_communitys_own_tiling_exported_by_the_cli_is_accepted(stack, city, tmp_path):
    community = city.communities[2].code
    path = tmp_path / "same.geojson"
    assert cli(stack, "export-boundaries", community, "--out", str(path)).returncode == 0
    exported = orjson.loads(path.read_bytes())
    assert sorted(f["properties"]["code"] for f in exported["features"]) == \
        sorted(g.code for g in city.grids if g.community_code == community)
    result = cli(stack, "import-boundaries", str(path))
    assert result.returncode == 0, result.stderr
    assert f"community {community}:" in result.stdout


def test_a_community_csv_adds_its_members_or_refuses_every_bad_line(stack, city, tmp_path):
    grid = city.grids[9].code
    good = [new_id("M"), new_id("M")]
    lines = ["member_id,name,role,grid_code,terminal_id"] + \
            [f"{m},成员 {i},grid_police_officer,{grid},T-{m}" for i, m in enumerate(good)]
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*lines, f"{new_id('M')},x,mayor,{grid},T-{good[0]}"]) + "\n", encoding="utf-8")
    result = cli(stack, "import-members", str(bad))
    assert result.returncode == 2
    assert "line 4: role 'mayor'" in result.stderr and "repeats an earlier line" in result.stderr, result.stderr
    assert owner_rows(stack, "select count(*) from members where member_id = any(%s)", good) == [(0,)]
    ok = tmp_path / "ok.csv"
    ok.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli(stack, "import-members", str(ok))
    assert result.returncode == 0, result.stderr
    assert owner_rows(stack, "select count(*) from members where member_id = any(%s) and grid_code = %s",
                      good, grid) == [(2,)]
    assert all(f"T-{m}: password" in result.stdout for m in good)


def test_a_streets_communities_are_imported_and_a_community_too_small_for_its_grids_is_refused(stack, city,
                                                                                             tmp_path):
    street = city.streets[1].code
    original = tmp_path / "communities.geojson"
    assert cli(stack, "export-boundaries", street, "--out", str(original)).returncode == 0
    document = orjson.loads(original.read_bytes())
    assert sorted(f["properties"]["code"] for f in document["features"]) == \
        sorted(c.code for c in city.communities if c.code.startswith(street))
    community = document["features"][0]
    code = community["properties"]["code"]
    renamed = tmp_path / "renamed.geojson"
    community["properties"]["name"] = "新社区"
    renamed.write_bytes(orjson.dumps(document))
    try:
        result = cli(stack, "import-boundaries", str(renamed))
        assert result.returncode == 0 and f"street {street}: " in result.stdout, result.stderr
        assert owner_rows(stack, "select name from org_units where code = %s", code) == [("新社区",)]

        community["geometry"] = mapping(shape(community["geometry"]).buffer(-0.0003))
        renamed.write_bytes(orjson.dumps(document))
        result = cli(stack, "import-boundaries", str(renamed))
        assert result.returncode == 2
        assert f"in community {code}: grid {code}" in result.stderr and f"outside its new boundary of {code}" in \
            result.stderr, result.stderr
        assert "inside the street, near community" in result.stderr, result.stderr
    finally:
        assert cli(stack, "import-boundaries", str(original)).returncode == 0
    assert owner_rows(stack, "select name from org_units where code = %s", code) == \
        [(next(c.name for c in city.communities if c.code == code),)]


def test_a_device_named_like_a_service_account_is_refused_and_the_service_keeps_working(stack, city):
    result = cli(stack, "add-member", new_id("M"), "--name", "冒 名", "--role", "grid_coordinator",
                 "--grid", city.grids[2].code, "--terminal", "cases")
    assert result.returncode == 2 and "'cases' is an account the broker has already" in result.stderr, result.stderr
    assert mqtt_connect_reason("127.0.0.1", stack.mosquitto.port, stack.account("cases")) == "Success"
    assert owner_rows(stack, "select count(*) from member_devices where device_id = 'cases'") == [(0,)]
