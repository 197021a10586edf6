"""The engine reads its broker logins from PostgreSQL (PG-1, issue 13), and the postgres-restore fault: a real
PostgreSQL 15 of this module on 127.0.77.x (issue 13's drill block), stopped by its handle.

- ``apply_broker_logins`` fills ``login``/``password``/``server`` of every broker configured without a login, leaves
  the others alone, and returns only what may be logged (names, key id, time);
- a missing key file, a missing database or a login sealed with another key is one ``CredentialsError`` line that
  holds no secret, and ``engine run`` turns it into a one-line error (exit 1), not a traceback;
- ``faults.postgres.DropAndRestore``: dump, drop (the logins cannot be read), heal restores the newest dump and
  records restore_s and the logins that decrypt again;
- fuzz: a key file of any bytes is refused with a CredentialsError that never echoes its content.
"""
from __future__ import annotations

import base64
import os
import shutil

import click
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faults.postgres import DropAndRestore
from reference.cli import _broker_logins
from reference.engine.config import BrokerConfig, EngineConfig
from reference.settings import BrokerLogin, BrokerLoginStore, CredentialsError, LoginKey, PgDumps
from reference.settings.logins import apply_broker_logins, read_broker_logins
from tradedrill.local import LocalStack
from tradedrill.topology import Topology

pytestmark = pytest.mark.services
SUBNET = "127.0.77"
DB = "credentials"
LOGINS = {"primary": BrokerLogin(5001, "s3cret-primary-Ä", "mt5-primary"),
          "backup": BrokerLogin(5001, "s3cret-backup-'\"", "mt5-backup")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pg-engine-logins")
    cluster = run_dir / "data" / "postgres"
    try:
        with LocalStack(Topology.default(subnet=SUBNET, services=("postgres",)), run_dir) as running:
            yield running
    finally:
        if cluster.is_symlink():
            shutil.rmtree(cluster.resolve(), ignore_errors=True)


@pytest.fixture
def dsn(stack):
    with psycopg.connect(stack.postgres_dsn(), autocommit=True) as conn:
        for name in (DB, DB + "__restore"):
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    return stack.postgres_dsn(DB)


@pytest.fixture
def key(tmp_path):
    return LoginKey.ensure(tmp_path / "keys" / "broker-logins.key")


def store(dsn: str, key: LoginKey) -> None:
    s = BrokerLoginStore(dsn, key)
    s.ensure_schema()
    s.put_many(LOGINS)


def config(dsn: str, key_file, brokers=None) -> EngineConfig:
    brokers = brokers or [{"name": "primary", "params": {"kind": "simulator"}},
                          {"name": "backup", "params": {"kind": "simulator"}}]
    return EngineConfig.load(None, overrides={"brokers": brokers, "credentials_dsn": dsn,
                                              "credentials_key_file": str(key_file)})


def test_the_engine_config_gets_its_broker_logins_from_postgresql(dsn, key):
    store(dsn, key)
    cfg = config(dsn, key.path)
    info = apply_broker_logins(cfg)
    got = {b.name: (b.login, b.password, b.server) for b in cfg.broker_configs()}
    assert got == {n: tuple(login) for n, login in LOGINS.items()}
    assert info["brokers"] == ["primary", "backup"] and info["key_id"] == key.key_id
    text = repr(info)
    assert all(login.password not in text for login in LOGINS.values())
    assert base64.urlsafe_b64encode(key._key).decode()[:20] not in text   # noqa: SLF001


def test_a_broker_with_a_login_of_its_own_is_left_alone_and_no_dsn_reads_nothing(dsn, key):
    store(dsn, key)
    cfg = config(dsn, key.path, [{"name": "primary", "login": 7, "password": "given"},
                                 {"name": "backup"}])
    assert apply_broker_logins(cfg)["brokers"] == ["backup"]
    primary, backup = cfg.broker_configs()
    assert (primary.login, primary.password) == (7, "given") and backup.login == 5001
    plain = EngineConfig.load(None, overrides={"brokers": [{"name": "primary"}]})
    assert apply_broker_logins(plain) == {"brokers": [], "key_id": None}
    assert plain.broker_configs()[0].login is None


def test_missing_key_database_or_wrong_key_is_one_line_without_a_secret(stack, dsn, key, tmp_path):
    store(dsn, key)
    with pytest.raises(CredentialsError, match="does not exist"):
        apply_broker_logins(config(dsn, tmp_path / "nowhere.key"))
    other = LoginKey.ensure(tmp_path / "other" / "k.key")
    with pytest.raises(CredentialsError, match="sealed with key") as wrong:
        apply_broker_logins(config(dsn, other.path))
    with psycopg.connect(stack.postgres_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {DB} WITH (FORCE)")
    with pytest.raises(click.ClickException) as cli_error:   # what `engine run` prints (exit 1), no traceback
        _broker_logins(config(dsn, key.path))
    for message in (str(wrong.value), cli_error.value.format_message()):
        assert "\n" not in message
        assert all(login.password not in message for login in LOGINS.values())
    assert cli_error.value.format_message().startswith("broker logins: cannot read broker logins")


def test_drop_and_restore_fault_restores_the_newest_dump_and_the_logins_decrypt(stack, dsn, key, tmp_path):
    store(dsn, key)
    dumps = PgDumps(dsn, tmp_path / "dumps")
    fault = DropAndRestore(dumps, lambda: list(read_broker_logins(dsn, key.path)), expected=list(LOGINS))
    fault.inject()
    try:
        with pytest.raises(CredentialsError):
            read_broker_logins(dsn, key.path)   # the database is gone while the fault is active
        assert fault.details()["dropped"] is True and fault.details()["dump_bytes"] > 0
    finally:
        fault.heal()
    d = fault.details()
    assert sorted(d["logins_decrypted"]) == sorted(LOGINS) and d["logins_expected"] == sorted(LOGINS)
    assert d["restore_s"] > 0 and d["outage_s"] >= d["restore_s"] and d["restored_from"] == d["dump"]
    assert read_broker_logins(dsn, key.path) == LOGINS


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300))
def test_fuzz_a_key_file_of_any_bytes_is_refused_or_used_never_echoed(tmp_path, content):
    path = tmp_path / "fuzz.key"
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    cfg = EngineConfig.load(None, overrides={"brokers": [{"name": "primary"}],
                                             # a closed port on our block: the database is never reached
                                             "credentials_dsn": "host=127.0.77.250 port=1 dbname=x connect_timeout=1",
                                             "credentials_key_file": str(path)})
    with pytest.raises(CredentialsError) as err:
        apply_broker_logins(cfg)
    message = str(err.value)
    assert "\n" not in message
    stripped = content.strip()
    if len(stripped) >= 8:
        assert stripped.decode("latin-1") not in message
    assert isinstance(cfg.broker_configs()[0], BrokerConfig) and cfg.broker_configs()[0].login is None
