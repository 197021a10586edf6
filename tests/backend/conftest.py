"""Fixtures of the backend tests (issue 15): a real redis-server on 127.0.85.x (the backend test block,
``TRADEDRILL_BACKEND_TEST_SUBNET`` moves it; the backend's real-stack tests use 127.0.86.x,
``TRADEDRILL_BACKEND_STACK_SUBNET``) and the backend app in-process (Starlette's TestClient)
with a signal sender that waits for no replica (one Redis node here; WAIT 1 is exercised by the stack tests).
Every process is a ProcessNode stopped by its handle at teardown."""
from __future__ import annotations

import os
import re
import shutil
import socket

import pytest
import redis

from tradedrill.process import ProcessNode



def loopback_block(variable: str, default: str) -> str:
    """``variable``'s loopback /24 (three octets, 127.x.y), else ``default``; anything else is a one-line error."""
    value = os.environ.get(variable, default).strip()
    if not re.fullmatch(r"127\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)", value):
        raise RuntimeError(f"{variable}={value!r} is not a loopback block like 127.0.85 (three octets, 127.x.y)")
    return value


# the backend tests' loopback blocks (docs/CONVENTIONS.md); the environment moves them, e.g. to run two
# checkouts' backend tests at once
BLOCK = loopback_block("TRADEDRILL_BACKEND_TEST_SUBNET", "127.0.85")         # app's Redis, panel stack, proxy test
STACK_BLOCK = loopback_block("TRADEDRILL_BACKEND_STACK_SUBNET", "127.0.86")  # the real-stack tests


def address(host: int) -> str:
    return f"{BLOCK}.{int(host)}"


def stack_address(host: int) -> str:
    return f"{STACK_BLOCK}.{int(host)}"


REDIS_HOST = address(1)
PASSPHRASE = "correct horse battery staple"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_node(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    base = tmp_path_factory.mktemp("backend-redis")
    port = free_port(REDIS_HOST)

    def ready() -> bool:
        try:
            return bool(redis.Redis(host=REDIS_HOST, port=port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    node = ProcessNode(name="backend-test-redis", role="rtss", address=REDIS_HOST, port=port,
                       argv=["redis-server", "--bind", REDIS_HOST, "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(base)],
                       log_path=base / "redis.log", ready=ready)
    try:
        node.start().wait_ready()
        yield node
    finally:
        node.stop()


@pytest.fixture
def rdb(redis_node):
    client = redis.Redis(host=REDIS_HOST, port=redis_node.port, decode_responses=True, socket_timeout=2)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


def make_config(tmp_path, redis_port: int, **changes):
    from reference.backend.config import BackendConfig

    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    fields = dict(instance="backend-t", redis_host=REDIS_HOST, redis_port=redis_port, redis_username="",
                  wait_replicas=0, passphrase_file=str(secret), rate_per_s=1000.0, rate_burst=1000)
    fields.update(changes)
    return BackendConfig(**fields)


@pytest.fixture
def client(tmp_path, redis_node, rdb):
    from fastapi.testclient import TestClient

    from reference.backend.app import create_app

    app = create_app(make_config(tmp_path, redis_node.port))
    with TestClient(app) as c:
        yield c


def alert(alert_id: str = "a-1", **changes) -> dict:
    body = {"passphrase": PASSPHRASE, "alert_id": alert_id, "symbol": "EURUSD", "side": "buy", "volume": 0.01}
    body.update(changes)
    return body
