"""Broker logins in a real PostgreSQL 15 (PG-1): stored sealed, dumped with pg_dump (gzip), the database dropped and
restored, the logins decrypt again; the key never reaches the server's log, a dump or any file of the run folder
but its own 0600 file. The cluster is this module's own, on 127.0.72.x, stopped by its handle (also on failure)."""
from __future__ import annotations

import base64
import gzip
import logging
import os
import shutil
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.settings import (BackupError, BrokerLogin, BrokerLoginStore, CredentialsError, DamagedDump,
                                DumpPolicy, DumpSchedule, LoginKey, PgDumps, default_key_path, read_broker_logins)
from tradedrill.local import LocalStack
from tradedrill.topology import Topology
from tradedrill.waiting import wait_until

pytestmark = pytest.mark.services
SUBNET = "127.0.72"
DB = "credentials"
LOGINS = {
    "mt5-primary": BrokerLogin(5001, "pr1mary-Pässword!", "Sim-Primary"),
    "mt5-backup": BrokerLogin(5002, "b4ckup'\"; DROP TABLE x; --", "Sim-Backup"),
    "mt5-third": BrokerLogin(2**62, "third-password-é", "Broker-Live-3"),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pg-settings")
    cluster = run_dir / "data" / "postgres"
    try:
        with LocalStack(Topology.default(subnet=SUBNET, services=("postgres",)), run_dir) as running:
            with psycopg.connect(running.postgres_dsn(), autocommit=True) as conn:
                # every statement logged: the test below then shows that no key and no password reaches the log
                conn.execute("ALTER SYSTEM SET log_statement = 'all'")
                conn.execute("SELECT pg_reload_conf()")
            yield running
    finally:
        if cluster.is_symlink():  # the cluster was relocated under /tmp for the postgres user: ours to remove
            shutil.rmtree(cluster.resolve(), ignore_errors=True)


@pytest.fixture
def fresh_db(stack):
    """An empty ``credentials`` database, its dsn."""
    with psycopg.connect(stack.postgres_dsn(), autocommit=True) as conn:
        for name in (DB, DB + "__restore"):
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    return stack.postgres_dsn(DB)


@pytest.fixture
def key(stack):
    return LoginKey.ensure(default_key_path(stack.run_dir))


@pytest.fixture
def dumps(stack, fresh_db, tmp_path):
    return PgDumps(fresh_db, tmp_path / "backup" / "postgres")


def stored(dsn: str, key: LoginKey) -> BrokerLoginStore:
    store = BrokerLoginStore(dsn, key)
    store.ensure_schema()
    store.put_many(LOGINS)
    return store


def drop(stack, name: str = DB) -> None:
    with psycopg.connect(stack.postgres_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_store_dump_drop_restore_and_the_logins_decrypt_again(stack, fresh_db, key, dumps):
    stored(fresh_db, key)
    dump = dumps.dump()
    assert dump.path.name.startswith(f"{DB}-") and dump.path.name.endswith(".sql.gz")
    assert os.stat(dump.path).st_mode & 0o777 == 0o600
    assert b"PostgreSQL database dump complete" in gzip.decompress(dump.path.read_bytes())

    drop(stack)
    with pytest.raises(CredentialsError, match="cannot read broker logins"):
        read_broker_logins(fresh_db, key.path)
    restored = dumps.restore()

    assert restored.path == dump.path
    assert read_broker_logins(fresh_db, key.path) == LOGINS          # what the engine calls
    assert read_broker_logins(fresh_db, key.path, ["mt5-backup"]) == {"mt5-backup": LOGINS["mt5-backup"]}


def test_the_key_appears_in_no_log_dump_or_file_but_its_own(stack, fresh_db, key, dumps, caplog):
    caplog.set_level(logging.DEBUG)
    store = stored(fresh_db, key)
    dump = dumps.dump()
    drop(stack)
    dumps.restore()
    assert store.get_many() == LOGINS
    with pytest.raises(CredentialsError):
        BrokerLoginStore(fresh_db, LoginKey.generate()).get("mt5-primary")

    key_text = key.path.read_text().strip().encode()
    raw = base64.urlsafe_b64decode(key_text)
    needles = {"key (base64)": key_text, "key (raw)": raw, "key (hex)": raw.hex().encode(),
               **{f"password of {n}": login.password.encode() for n, login in LOGINS.items()}}
    assert os.stat(key.path).st_mode & 0o777 == 0o600

    pg_log = stack.node("postgres").log_path.read_bytes()
    assert b"broker_logins" in pg_log                       # the log did record our statements
    dump_text = gzip.decompress(dump.path.read_bytes())
    assert b"COPY public.broker_logins" in dump_text       # the dump did hold the rows
    for what, needle in needles.items():
        assert needle not in pg_log, f"{what} is in the PostgreSQL log"
        assert needle not in dump_text, f"{what} is in the dump"
        assert needle.decode("utf-8", "replace") not in caplog.text, f"{what} was logged"

    # every file of the run folder (the cluster too, wherever it was relocated), and the dumps
    roots = [stack.run_dir, (stack.run_dir / "data" / "postgres").resolve(), dumps.folder]
    scanned = 0
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            for name in files:
                path = Path(folder) / name
                if path == key.path or not path.is_file() or path.is_symlink():
                    continue
                data = path.read_bytes()
                scanned += 1
                for what in ("key (base64)", "key (raw)", "key (hex)"):
                    assert needles[what] not in data, f"{what} is in {path}"
    assert scanned > 100  # the cluster's files were read, not only the run folder's few


def test_a_damaged_newest_dump_is_skipped_and_the_database_untouched(stack, fresh_db, key, dumps):
    store = stored(fresh_db, key)
    older = dumps.dump()
    store.put("mt5-fourth", BrokerLogin(7, "four", "Four"))
    newer = dumps.dump()
    newer.path.write_bytes(newer.path.read_bytes()[:-200])      # truncated gzip

    with pytest.raises(DamagedDump, match=rf"dump {newer.path.name} is damaged"):
        dumps.restore(newer.path)
    assert set(store.get_many()) == {*LOGINS, "mt5-fourth"}    # the failed restore changed nothing

    restored = dumps.restore_latest()
    assert restored.path == older.path
    assert len(restored.skipped) == 1 and newer.path.name in restored.skipped[0]
    assert store.get_many() == LOGINS                            # the older dump's content


def test_a_dump_without_its_trailer_is_not_committed(stack, fresh_db, key, dumps):
    store = stored(fresh_db, key)
    dump = dumps.dump()
    text = gzip.decompress(dump.path.read_bytes())
    cut = text[: text.index(b"-- PostgreSQL database dump complete")]
    dump.path.write_bytes(gzip.compress(cut))
    store.put("mt5-fourth", BrokerLogin(7, "four", "Four"))
    with pytest.raises(DamagedDump, match="is incomplete"):
        dumps.restore(dump.path)
    assert set(store.get_many()) == {*LOGINS, "mt5-fourth"}


def test_dumps_run_on_their_schedule_and_rotate(stack, fresh_db, key, tmp_path):
    stored(fresh_db, key)
    dumps = PgDumps(fresh_db, tmp_path / "sched", DumpPolicy(interval_s=0.2, dumps_kept=3))
    with DumpSchedule(dumps) as schedule:
        wait_until(lambda: schedule.count >= 5, 60.0, "five scheduled dumps")
    assert not schedule.running and schedule.failures == 0
    kept = dumps.dumps()
    assert len(kept) == 3 and kept[0] == max(d.path for d in schedule.taken)
    times = [dumps.taken_at(d.path) for d in list(schedule.taken)]
    assert all(b - a >= 0.2 for a, b in zip(times, times[1:]))   # never more often than the interval


def test_the_schedule_counts_from_the_newest_dump(tmp_path):
    clock = [1_000_000.0]
    dumps = PgDumps(f"host={SUBNET}.2 dbname={DB}", tmp_path, clock=lambda: clock[0])
    assert dumps.seconds_until_due() == 0.0                     # no dump yet: due now
    (tmp_path / f"{DB}-19700112T134640000000Z.sql.gz").write_bytes(b"")   # taken at 1,000,000 s
    assert dumps.seconds_until_due() == 6 * 3600.0               # PG-1: every 6 h
    clock[0] += 6 * 3600.0 + 1
    assert dumps.seconds_until_due() == 0.0


def test_a_failing_pg_dump_is_one_line_naming_the_database(stack, tmp_path):
    dumps = PgDumps(stack.postgres_dsn("no_such_db"), tmp_path)
    with pytest.raises(BackupError) as caught:
        dumps.dump()
    assert "\n" not in str(caught.value)
    assert "pg_dump of database no_such_db failed" in str(caught.value) and "no_such_db" in str(caught.value)
    assert dumps.dumps() == [] and list(tmp_path.iterdir()) == []


any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=200)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(password=any_text, server=any_text, login=st.integers(1, 2**63 - 1))
def test_any_strings_round_trip_through_postgres(stack, key, password, server, login):
    dsn = stack.postgres_dsn()
    store = BrokerLoginStore(dsn, key)
    store.ensure_schema()
    store.put("fuzz", BrokerLogin(login, password, server))
    assert store.get("fuzz") == BrokerLogin(login, password, server)
