"""Fixtures of the fault tests: loopback 127.0.4.x only; every server and process is stopped in teardown."""
from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import socketserver
import threading
from pathlib import Path

import pytest
import redis

from faults.proxy import EmbeddedToxiproxy
from tradedrill.credentials import Credential, StackSecrets
from tradedrill.process import ProcessNode
from tradedrill.services import redis as redis_svc
from tradedrill.topology import Topology

SEED = 20240607


def is_root() -> bool:
    return os.geteuid() == 0 and shutil.which("nft") is not None


needs_root = pytest.mark.skipif(not is_root(), reason="kernel faults need root and nft")


@pytest.fixture(autouse=True)
def fault_state(tmp_path, monkeypatch):
    path = tmp_path / "faults-state.json"
    monkeypatch.setenv("TRADEDRILL_FAULTS_STATE", str(path))
    return path


@pytest.fixture
def toxiproxy_server():
    with EmbeddedToxiproxy(listen="127.0.4.1:0", seed=SEED) as srv:
        yield srv


@pytest.fixture
def toxiproxy_client(toxiproxy_server):
    """The real toxiproxy-python client, pointed at our server (its address is a class attribute)."""
    import toxiproxy
    from toxiproxy.api import APIConsumer

    old = (APIConsumer.host, APIConsumer.port)
    APIConsumer.host, APIConsumer.port = toxiproxy_server.host, toxiproxy_server.port
    try:
        yield toxiproxy.Toxiproxy()
    finally:
        APIConsumer.host, APIConsumer.port = old


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        try:
            for _ in range(1_000_000):
                data = sock.recv(65536)
                if not data:
                    return
                sock.sendall(data)
        except OSError:
            return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


@pytest.fixture
def echo_server():
    """A TCP echo server on 127.0.4.20; yields "host:port"."""
    server = _Server(("127.0.4.20", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.4.20:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class UdpEcho:
    def __init__(self, host: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()
        return f"{host}:{port}"

    def _run(self):
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.sock.sendto(data, addr)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def udp_echo():
    echo = UdpEcho("127.0.4.30")
    try:
        yield echo
    finally:
        echo.close()


def hostport(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


# the harness login of the lone Redis last built by ``redis_node`` (what ``quick_redis`` logs in with)
_LONE_REDIS: dict[str, Credential] = {}


def redis_node(tmp_path: Path, address: str, port: int = 6379, name: str = "redis") -> ProcessNode:
    """A lone Redis (no persistence) at ``address:port``, built like every Redis of the stack
    (``tradedrill.services.redis``: ACL users, the default user off); its config, data, secrets and log live under
    ``tmp_path``."""
    subnet = address.rpartition(".")[0]
    topo = Topology.default(subnet=subnet, services=("redis",), overrides={
        "redis.port": port, "redis.replicas": 0, "sentinel.count": 1, "sentinel.quorum": 1,
        "redis.save": "", "redis.appendonly": "no"})
    spec = dataclasses.replace(topo.node("redis-1"), name=name, address=address)
    node = redis_svc.build_node(spec, topo, tmp_path, None)
    node.ready_timeout = 10.0
    _LONE_REDIS["harness"] = StackSecrets.load(tmp_path).harness
    return node


@pytest.fixture
def redis_primary(tmp_path):
    node = redis_node(tmp_path, "127.0.4.2")
    node.start().wait_ready()
    try:
        yield node
    finally:
        node.stop()


def quick_redis(address: str, port: int = 6379, timeout: float = 0.5) -> redis.Redis:
    """A client whose operations fail fast (no hidden retries), so a fault shows as an error; it logs in as the
    harness of the lone Redis ``redis_node`` built last (directly or through a proxy in front of it)."""
    from redis.retry import Retry
    from redis.backoff import NoBackoff

    auth = _LONE_REDIS["harness"].redis_kwargs() if "harness" in _LONE_REDIS else {}
    return redis.Redis(host=address, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
                       retry=Retry(NoBackoff(), 0), **auth)
