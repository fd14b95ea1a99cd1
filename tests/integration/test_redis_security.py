"""Redis answers only clients that know its password."""
from __future__ import annotations

import pytest
import redis


def test_redis_refuses_an_unauthenticated_client(settings):
    anonymous = redis.Redis(host=settings.redis_host, port=settings.redis_port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.set("gcc:test", "x")
    anonymous.close()


def test_redis_refuses_a_wrong_password(settings):
    wrong = redis.Redis(host=settings.redis_host, port=settings.redis_port, password="wrong")
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    wrong.close()


def test_redis_serves_the_configured_password(redis_client):
    redis_client.set("gcc:test:auth", "ok")
    assert redis_client.get("gcc:test:auth") == b"ok"
    assert redis_client.config_get("appendonly") == {"appendonly": "yes"}
