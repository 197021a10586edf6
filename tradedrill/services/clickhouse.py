"""ClickHouse (Debian's clickhouse-server 18.16) as a local process, its configuration generated into the run folder.

18.16 is what Debian ships; clickhouse-connect 1.6.0 is the newest client that talks to it (``compress=False``,
column types always passed; ARCHITECTURE.md). The server has no insert dedup tokens, so idempotent history writes
use ReplacingMergeTree keyed by order id.

Access: the only user, ``default``, has the run folder's generated password (``tradedrill.credentials``), stored as
its SHA-256 in ``users.xml``, and is allowed from loopback only; every client here logs in. As root the server runs
as the package's ``clickhouse`` account when it can reach the run folder.
"""
from __future__ import annotations

import base64
import shutil
import urllib.request
from pathlib import Path

from tradedrill.credentials import (Credential, StackSecrets, account_for, grant_traverse, private_dir, sha256_hex,
                                    write_private)
from tradedrill.process import PidRegistry, ProcessNode
from tradedrill.topology import NodeSpec, Topology

BINARY = "/usr/sbin/clickhouse-server"
ACCOUNT = "clickhouse"  # the Debian package's account


def require_binary() -> str:
    path = shutil.which("clickhouse-server") or (BINARY if Path(BINARY).exists() else None)
    if not path:
        raise FileNotFoundError(
            "clickhouse-server is not installed: run `apt-get install -y clickhouse-server` (or the README's commands)"
        )
    return path


def config_xml(spec: NodeSpec, data_dir: Path) -> str:
    return f"""<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>{data_dir}/server.log</log>
    <errorlog>{data_dir}/server.err.log</errorlog>
    <size>100M</size><count>2</count>
  </logger>
  <listen_host>{spec.address}</listen_host>
  <tcp_port>{spec.port}</tcp_port>
  <http_port>{spec.ports['http']}</http_port>
  <max_connections>512</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <path>{data_dir}/data/</path>
  <tmp_path>{data_dir}/tmp/</tmp_path>
  <user_files_path>{data_dir}/user_files/</user_files_path>
  <format_schema_path>{data_dir}/format_schemas/</format_schema_path>
  <users_config>{data_dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
</yandex>
"""


def users_xml(credential: Credential) -> str:
    """The users file: one user, its password as SHA-256, loopback only."""
    return f"""<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage><load_balancing>random</load_balancing></default></profiles>
  <users>
    <{credential.username}>
      <password_sha256_hex>{sha256_hex(credential.password)}</password_sha256_hex>
      <networks><ip>127.0.0.0/8</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </{credential.username}>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""


def http_query(address: str, http_port: int, query: str = "SELECT 1", timeout: float = 1.0,
               credential: Credential | None = None) -> str:
    req = urllib.request.Request(f"http://{address}:{http_port}/", data=query.encode(), method="POST")
    if credential:
        token = base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return resp.read().decode()


def ping(address: str, http_port: int, credential: Credential | None = None) -> bool:
    return http_query(address, http_port, credential=credential).strip() == "1"


def client(address: str, http_port: int, credential: Credential | None = None, **kwargs):
    """A clickhouse-connect client set up for 18.16 (no compression), logged in as ``credential``."""
    import clickhouse_connect

    if credential:
        kwargs.setdefault("username", credential.username)
        kwargs.setdefault("password", credential.password)
    return clickhouse_connect.get_client(host=address, port=http_port, compress=False, **kwargs)


def build_node(spec: NodeSpec, topo: Topology, run_dir: Path, registry: PidRegistry | None) -> ProcessNode:
    binary = require_binary()
    run_dir = Path(run_dir)
    secrets = StackSecrets.ensure(run_dir)
    credential = secrets.clickhouse()
    account = account_for(ACCOUNT, run_dir)
    data_dir = run_dir / "data" / spec.name
    conf = data_dir / "config.xml"

    def write_config() -> None:
        if account:
            for folder in (run_dir, data_dir.parent):
                private_dir(folder)
                grant_traverse(folder, [account])
        else:
            private_dir(data_dir.parent)
        private_dir(data_dir, owner=account)
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            private_dir(data_dir / sub, owner=account)
        write_private(conf, config_xml(spec, data_dir), owner=account)
        write_private(data_dir / "users.xml", users_xml(credential), owner=account)

    http = spec.ports["http"]
    return ProcessNode(
        name=spec.name, role=spec.role, address=spec.address, port=spec.port,
        argv=[binary, f"--config-file={conf}"],
        log_path=run_dir / "logs" / f"{spec.name}.log", cwd=data_dir, user=account,
        ready=lambda: ping(spec.address, http, credential), registry=registry, before_start=write_config,
        extra={"kind": spec.kind, "http_port": http, "account": account},
    )
