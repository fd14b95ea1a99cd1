"""The OwnTracks configuration and its import link (registry.onboarding), without a stack."""
from __future__ import annotations

import base64
from urllib.parse import unquote

import orjson
import pytest

from config.settings import Settings
from registry import onboarding
from registry.store import Credential
from telemetry.topics import AccountKind

PHONE = Credential("ot-m-1", AccountKind.OWNTRACKS, "p+ss/word=")
SETTINGS = Settings(_env_file=None, public_mqtt_host="gcc.example.org", public_mqtt_port=8883, public_mqtt_tls=True,
                    public_ingest_url="https://gcc.example.org/")


def test_mqtt_mode_carries_the_public_broker_and_binds_the_client_id_to_the_username():
    config = onboarding.owntracks_config(PHONE, SETTINGS)
    assert {k: config[k] for k in ("_type", "mode", "host", "port", "tls", "username", "password", "clientId")} == \
        {"_type": "configuration", "mode": 0, "host": "gcc.example.org", "port": 8883, "tls": True,
         "username": "ot-m-1", "password": "p+ss/word=", "clientId": "ot-m-1"}


def test_http_mode_points_at_the_owntracks_endpoint():
    config = onboarding.owntracks_config(PHONE, SETTINGS, mode="http")
    assert (config["mode"], config["url"]) == (3, "https://gcc.example.org/owntracks")


def test_the_import_link_is_percent_encoded_base64_of_the_configuration():
    config = onboarding.owntracks_config(PHONE, SETTINGS)
    link = onboarding.import_link(config)
    encoded = link.removeprefix("owntracks:///config?inline=")
    assert "+" not in encoded and "/" not in encoded
    assert orjson.loads(base64.b64decode(unquote(encoded))) == config


def test_the_qr_code_is_a_png():
    assert onboarding.qr_png(onboarding.owntracks_config(PHONE, SETTINGS))[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_traccar_client_phone_gets_its_server_url_with_the_token():
    phone = Credential("tc-m-1", AccountKind.OSMAND, "tok")
    assert onboarding.traccar_client(phone, SETTINGS) == {"server_url": "https://gcc.example.org/osmand/tok",
                                                          "device_identifier": "tc-m-1"}


def test_an_owntracks_configuration_is_refused_for_another_kind_of_account():
    with pytest.raises(ValueError):
        onboarding.owntracks_config(Credential("T-1", AccountKind.TERMINAL, "x"), SETTINGS)
