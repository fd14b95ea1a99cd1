"""A gateway's last will, published by the real broker when its connection dies, marks it offline:
its payload was written at connect (days ago, here), so the ingest times it at receipt."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from simulator import payloads
from telemetry.live import GatewayField, Keys

from ..support import wait_for
from .ingest_helpers import ThreadWorker
from .mqtt_helpers import device_with_will


@pytest.fixture(scope="module")
def worker(stack, city):
    with ThreadWorker(stack, index=103, share_group=f"t{uuid.uuid4().hex[:8]}") as w:
        yield w


def _gateway_rows(db, gateway_id: str, since: datetime) -> list[tuple]:
    db.rollback()
    with db.cursor() as cur:
        cur.execute("select state, time from gateway_status where gateway_id = %s and received_at >= %s "
                    "order by received_at", (gateway_id, since))
        return cur.fetchall()


def test_a_gateway_whose_connection_dies_goes_offline_by_its_last_will(stack, city, worker, db, redis_client):
    gateway = city.gateways[40]
    account = stack.account(gateway.gateway_id)
    began = datetime.now(timezone.utc)
    connected_at = began - timedelta(days=8)       # a will written long ago: older than any time check allows
    topic, will = payloads.gateway_status(gateway.gateway_id, connected_at, "offline", will=True)
    # not retained (the simulator's are): a live delivery reaches the ingest without the retain flag
    # either way, and a retained will would stay at the broker for every later subscriber
    client = device_with_will(stack.mosquitto.port, account, topic, will, retain=False)
    try:
        client.publish(*payloads.gateway_status(gateway.gateway_id, began, "online"), qos=1).wait_for_publish(5)
        key = Keys.gateway(gateway.gateway_id)
        wait_for(lambda: redis_client.hget(key, GatewayField.STATE) == b"online", 10, "the gateway online")
        client.socket().close()                    # the connection dies: no DISCONNECT, the broker sends the will
        wait_for(lambda: redis_client.hget(key, GatewayField.STATE) == b"offline", 10, "the gateway offline")
    finally:
        client.loop_stop()
    [online, offline] = _gateway_rows(db, gateway.gateway_id, began)
    assert online[0] == "online" and offline[0] == "offline"
    assert offline[1] > began                      # timed at receipt, not at connect
