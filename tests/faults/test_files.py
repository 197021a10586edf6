"""File faults: corrupted DuckDB files fail to open or read, ENOSPC surfaces, configs break, heal restores."""
import errno
import json
import os
import random
import subprocess
import sys

import duckdb
import pytest

from faults.core import FaultError
from faults.files import CorruptConfig, CorruptDuckDB, DiskFull, FileSizeLimit, LostUnfsyncedWrites

from .conftest import needs_root


def make_db(path, rows=50_000, with_wal=False):
    con = duckdb.connect(str(path))
    con.execute("create table fills as select range as id, range * 2 as qty from range(?)", [rows])
    if with_wal:
        con.execute("pragma disable_checkpoint_on_shutdown")
        con.execute("insert into fills select range + 1000000, 1 from range(2000)")
    con.close()


def read_all(path):
    con = duckdb.connect(str(path))
    try:
        return con.execute("select count(*), sum(qty) from fills").fetchone()
    finally:
        con.close()


@pytest.mark.parametrize("mode", ["zero-header", "flip-block", "truncate"])
def test_corrupted_duckdb_fails_to_open_and_heal_restores(tmp_path, mode):
    db = tmp_path / "journal.duckdb"
    make_db(db)
    good = read_all(db)
    with CorruptDuckDB(db, mode, random.Random(3)) as fault:
        with pytest.raises(duckdb.Error):
            read_all(db)
    assert read_all(db) == good
    assert fault.details()["mode"] == mode


@pytest.mark.parametrize("mode", ["wal-truncate", "wal-garble", "torn-write"])
def test_wal_damage(tmp_path, mode):
    db = tmp_path / "journal.duckdb"
    make_db(db, with_wal=True)
    wal = tmp_path / "journal.duckdb.wal"
    assert wal.exists()
    before = wal.read_bytes()
    fault = CorruptDuckDB(db, mode, random.Random(4)).inject()
    try:
        assert wal.read_bytes() != before
    finally:
        fault.heal()
    assert wal.read_bytes() == before
    assert read_all(db)[0] == 52_000


def test_corruption_is_seeded_and_can_be_left_for_the_system_to_repair(tmp_path):
    offsets = []
    for _ in range(2):
        db = tmp_path / f"d{len(offsets)}.duckdb"
        make_db(db, rows=1000)
        f = CorruptDuckDB(db, "flip-block", random.Random(11), restore_on_heal=False).inject()
        offsets.append(f.details()["offsets"])
        f.heal()
        with pytest.raises(duckdb.Error):
            read_all(db)
    assert offsets[0] == offsets[1]
    with pytest.raises(FaultError):
        CorruptDuckDB(tmp_path / "x.duckdb", "nope", random.Random(1))


def test_lost_unfsynced_writes_put_the_file_back_to_the_last_sync(tmp_path):
    log = tmp_path / "aof"
    log.write_bytes(b"set a 1\n")
    fault = LostUnfsyncedWrites([log, tmp_path / "new"])
    log.write_bytes(b"set a 1\nset b 2\n")
    fault.synced()
    with open(log, "ab") as fh:
        fh.write(b"set c 3\n")
    (tmp_path / "new").write_bytes(b"never synced")
    with fault:
        assert log.read_bytes() == b"set a 1\nset b 2\n"
        assert not (tmp_path / "new").exists()
    assert fault.details()["lost_bytes"] == len(b"set c 3\n") + len(b"never synced")


@needs_root
def test_disk_full_raises_enospc_and_heal_gives_the_space_back(tmp_path):
    data = tmp_path / "node-data"
    data.mkdir()
    (data / "existing.bin").write_bytes(b"k" * 5000)
    with DiskFull(data) as fault:
        assert (data / "existing.bin").read_bytes() == b"k" * 5000
        with pytest.raises(OSError) as exc:
            with open(data / "more.bin", "wb") as fh:
                for _ in range(100):
                    fh.write(b"m" * 65536)
                    fh.flush()
        assert exc.value.errno == errno.ENOSPC
        (data / "written-during.txt").write_bytes(b"")
    (data / "after.bin").write_bytes(b"a" * 1_000_000)
    assert (data / "existing.bin").read_bytes() == b"k" * 5000
    assert not any(p.mountpoint == str(data) for p in __import__("psutil").disk_partitions(all=True))
    assert fault.describe().startswith("disk full")


def test_file_size_limit_makes_a_child_fail_with_efbig(tmp_path):
    target = tmp_path / "out.bin"
    child = subprocess.Popen([sys.executable, "-c", f"""
import sys
line = sys.stdin.readline()
try:
    with open({str(target)!r}, 'wb') as fh:
        fh.write(b'x' * 100000)
    print('ok', flush=True)
except OSError as exc:
    print('errno', exc.errno, flush=True)
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with FileSizeLimit(child.pid, 10_000):
            out, _ = child.communicate("go\n", timeout=10)
        assert out.split() == ["errno", str(errno.EFBIG)]
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(5)


@pytest.mark.parametrize("mode", CorruptConfig.MODES)
def test_config_corruption_variants(tmp_path, mode):
    cfg = tmp_path / "engine.json"
    original = {"redis": {"host": "127.0.4.2", "port": 6379, "retries": 10}, "heartbeat_s": 1.0,
                "enabled": True, "brokers": ["primary", "backup"]}
    cfg.write_text(json.dumps(original))
    with CorruptConfig(cfg, mode, random.Random(8)) as fault:
        text = cfg.read_text()
        if mode in ("truncated", "invalid-json"):
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)
        elif mode == "wrong-types":
            assert json.loads(text) != original and fault.details()["changed"]
        else:
            assert len(text) > 10 * 1024 and json.loads(text)["redis"] == original["redis"]
    assert json.loads(cfg.read_text()) == original
