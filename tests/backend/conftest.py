"""Fixtures of the backend tests (issue 15): a real redis-server on 127.0.85.x (the backend test block; the
backend's real-stack tests and benchmark use 127.0.86.x) and the backend app in-process (Starlette's TestClient)
with a signal sender that waits for no replica (one Redis node here; WAIT 1 is exercised by the stack tests).
Every process is a ProcessNode stopped by its handle at teardown."""
from __future__ import annotations

import shutil
import socket

import pytest
import redis

from tradedrill.process import ProcessNode

REDIS_HOST = "127.0.85.1"
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
