"""A real ClickHouse (Debian's clickhouse-server 18.16, started by ``tradedrill.services.clickhouse`` with the run
folder's generated password) per test module, on loopback block 127.0.74.x; journals and outcomes to feed it."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from reference.engine.journal import Intent, Journal
from reference.store.clickhouse_sync import ClickHouseSettings, ClickHouseTarget
from tradedrill.credentials import Credential, StackSecrets, write_private
from tradedrill.process import ProcessNode
from tradedrill.services import clickhouse as clickhouse_svc
from tradedrill.topology import Topology

SUBNET = "127.0.74"


@dataclass
class Server:
    node: ProcessNode
    address: str
    http_port: int
    credential: Credential
    password_file: Path
    run_dir: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    def settings(self, table: str, **overrides) -> ClickHouseSettings:
        return ClickHouseSettings(url=self.url, username=self.credential.username,
                                  password_file=str(self.password_file), table=table, **overrides)

    def target(self, table: str, **overrides) -> ClickHouseTarget:
        return ClickHouseTarget(self.settings(table, **overrides))

    def sql(self, query: str) -> str:
        return clickhouse_svc.http_query(self.address, self.http_port, query, timeout=10, credential=self.credential)


def start_server(tmp_path_factory, host: int) -> Server:
    topo = Topology.default(subnet=SUBNET, services=("clickhouse",))
    spec = topo.node("clickhouse")
    spec = type(spec)(spec.name, spec.kind, spec.role, f"{SUBNET}.{host}", spec.port, dict(spec.ports))
    run_dir = tmp_path_factory.mktemp(f"clickhouse-{host}")
    node = clickhouse_svc.build_node(spec, topo, run_dir, None)
    credential = StackSecrets.ensure(run_dir).clickhouse()
    password_file = run_dir / "clickhouse.password"
    write_private(password_file, credential.password + "\n")
    return Server(node, spec.address, spec.ports["http"], credential, password_file, run_dir)


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    """One ClickHouse per module at 127.0.74.<module's CH_HOST>; stopped by its handle even when a test fails."""
    srv = start_server(tmp_path_factory, getattr(request.module, "CH_HOST", 2))
    request.addfinalizer(srv.node.stop)
    srv.node.start().wait_ready()
    return srv


_tables = itertools.count(1)


@pytest.fixture
def table(server) -> str:
    """A fresh table name per test (the module's tests share one server)."""
    return f"outcomes_{int(time.time())}_{next(_tables)}"


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal-A.duckdb")
    yield j
    j.close()


def final_outcomes(journal: Journal, n: int, *, first: int = 0, broker: str = "primary") -> list[Intent]:
    """Write ``n`` final outcomes (every 5th a rejection without an order) into ``journal``; returns them."""
    intents = []
    for k in range(first, first + n):
        sig = {"signal_id": f"sig-{k}", "account": "5001", "symbol": "EURUSD", "side": "buy" if k % 2 else "sell",
               "volume": 0.01 * (1 + k % 7)}
        intent = Intent(signal_id=f"sig-{k}", entry_id=f"{1_700_000_000_000 + k}-0", signal=sig, attempt=1,
                        comment=f"td{k}-1", broker=broker)
        if k % 5 == 4:
            intent.state, intent.result = "REJECTED", {"status": "rejected", "code": "10019", "reason": "no money"}
        else:
            intent.state = "DONE"
            intent.result = {"status": "executed", "code": "10009", "order": 500_000 + k, "deal": 900_000 + k,
                             "price": 1.1 + k / 1e5}
        intents.append(intent)
    journal.put_many(intents)
    return intents


class Recorder:
    """The engine's emit/alert stand-in: keeps every event and alert."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []
        self.alerts: list[tuple[str, str, dict]] = []

    def emit(self, event: str, **fields) -> None:
        self.events.append((event, fields))

    def alert(self, kind: str, message: str, **fields) -> None:
        self.alerts.append((kind, message, fields))

    def named(self, event: str) -> list[dict]:
        return [f for e, f in self.events if e == event]

    def text(self) -> str:
        return repr(self.events) + repr(self.alerts)
