"""BR-1's recovery order for a stopped Redis node's files (``reference.store.redis_recovery``), with a real Redis 7 on
127.0.78.x (issue 13's block) stopped and started by its handle:

- a valid AOF is used as it is;
- a damaged AOF is refused by redis-check-aof, kept under damaged/, and the RDB written at shutdown becomes the base
  of a new AOF: Redis (appendonly yes, unchanged) starts with every key the RDB holds;
- no valid RDB: the AOF is cut at the damage (a copy kept first), and Redis starts with what came before it;
- fuzz: any damage (offset, bytes) of the AOF files leaves files redis-check-aof accepts, or says "none".
"""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faults.redis_aof import DAMAGE, aof_files, damage_aof
from reference.store.redis_recovery import RedisRecoveryError, find_aof, recover_files
from tradedrill.process import ProcessNode

pytestmark = pytest.mark.services
ADDRESS, PORT = "127.0.78.2", 6391


def node(data: Path) -> ProcessNode:
    conf = data / "redis.conf"
    conf.write_text(f"bind {ADDRESS}\nport {PORT}\ndir {data}\nappendonly yes\nappendfsync always\nsave 60 1000\n"
                    f"protected-mode no\n")

    def ready() -> bool:
        try:
            return redis.Redis(ADDRESS, PORT, socket_timeout=0.3).ping()
        except redis.RedisError:
            return False
    return ProcessNode(name="redis-recovery", role="test", address=ADDRESS, port=PORT,
                       argv=[shutil.which("redis-server"), str(conf)], log_path=data / "redis.log", ready=ready,
                       cwd=data)


def client() -> redis.Redis:
    return redis.Redis(ADDRESS, PORT, socket_timeout=2, decode_responses=True)


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "redis"
    folder.mkdir()
    return folder


def filled(data: Path, keys: int = 50, *, save: bool = True) -> None:
    """A node that took ``keys`` writes (one XADD too) and was stopped; with ``save`` its RDB holds them all."""
    n = node(data)
    n.start().wait_ready()
    try:
        c = client()
        for i in range(keys):
            c.set(f"k{i}", i)
        c.xadd("stream", {"f": "v"})
        if not save:
            c.config_set("save", "")
    finally:
        n.terminate()   # SIGTERM: SHUTDOWN, an RDB when a save point is configured


def started_keys(data: Path) -> set[str]:
    n = node(data)
    n.start().wait_ready()
    try:
        return set(client().keys("*"))
    finally:
        n.terminate()


def test_a_valid_aof_is_used_as_it_is(data):
    filled(data)
    decision = recover_files(data)
    assert decision.source == "aof" and decision.aof_ok and "valid" in decision.aof_report
    assert decision.damaged_kept is None and not (data / "damaged").exists()
    assert len(started_keys(data)) == 51


def test_a_damaged_aof_falls_back_to_the_rdb_which_becomes_the_new_aof_base(data):
    filled(data)
    damage_aof(data, random.Random(3))
    decision = recover_files(data)
    assert decision.aof_ok is False and "not valid" in decision.aof_report
    assert decision.rdb_ok and decision.source == "rdb"
    kept = data / decision.damaged_kept
    assert kept.is_dir() and any(DAMAGE in p.read_bytes() for p in kept.iterdir() if p.is_file())   # evidence
    assert subprocess.run(["redis-check-aof", str(find_aof(data))], capture_output=True).returncode == 0
    assert started_keys(data) == {f"k{i}" for i in range(50)} | {"stream"}   # appendonly yes, nothing lost


def test_without_a_valid_rdb_the_aof_is_cut_at_the_damage_and_says_so(data):
    filled(data, save=False)
    (data / "dump.rdb").unlink(missing_ok=True)
    damage_aof(data, random.Random(5))
    decision = recover_files(data)
    assert decision.source == "aof-truncated" and decision.rdb_ok is False
    assert (data / decision.damaged_kept).exists() and any("--fix" in s for s in decision.steps)
    keys = started_keys(data)
    assert keys <= {f"k{i}" for i in range(50)} | {"stream"}   # what came before the damage, nothing invented


def test_a_deleted_manifest_with_its_folder_left_falls_back_to_the_rdb(data):
    filled(data)
    (data / "appendonlydir" / "appendonly.aof.manifest").unlink()   # was: FileExistsError traceback
    decision = recover_files(data)
    assert decision.source == "rdb" and any("without appendonly.aof.manifest" in s for s in decision.steps)
    assert (data / decision.damaged_kept).is_dir()                   # the folder left behind is evidence
    assert started_keys(data) == {f"k{i}" for i in range(50)} | {"stream"}


def test_an_aof_folder_that_is_a_file_falls_back_to_the_rdb(data):
    filled(data)
    shutil.rmtree(data / "appendonlydir")
    (data / "appendonlydir").write_bytes(b"not a folder")
    decision = recover_files(data)
    assert decision.source == "rdb" and any("a file, not a folder" in s for s in decision.steps)
    assert (data / decision.damaged_kept).read_bytes() == b"not a folder"
    assert started_keys(data) == {f"k{i}" for i in range(50)} | {"stream"}


def test_a_damaged_evidence_path_that_is_a_file_is_one_clear_line(data):
    filled(data)
    damage_aof(data, random.Random(3))
    (data / "damaged").write_text("someone's file")
    with pytest.raises(RedisRecoveryError) as err:
        recover_files(data)
    assert str(data / "damaged") in str(err.value) and "\n" not in str(err.value)
    assert (data / "damaged").read_text() == "someone's file"


def test_an_emptied_incremental_aof_gives_way_to_the_rdb_that_holds_more(data):
    filled(data, keys=200)
    incr = [p for p in (data / "appendonlydir").iterdir() if ".incr." in p.name]
    assert len(incr) == 1
    incr[0].write_bytes(b"")                        # passes redis-check-aof; Redis would start with DBSIZE 0
    decision = recover_files(data)
    assert decision.source == "rdb" and decision.aof_keys == 0 and decision.rdb_keys == 201, decision
    assert any("the RDB is preferred" in s for s in decision.steps)
    assert (data / decision.damaged_kept).is_dir()
    assert started_keys(data) == {f"k{i}" for i in range(200)} | {"stream"}


def test_a_sound_aof_with_its_rdb_is_used_after_the_comparison(data):
    filled(data)
    decision = recover_files(data)
    assert decision.source == "aof" and decision.aof_keys == 51 == decision.rdb_keys


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("redis-template")
    filled(folder, keys=20)
    return folder


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 10_000), junk=st.binary(min_size=1, max_size=16), drop_rdb=st.booleans(),
       which=st.integers(0, 3))
def test_fuzz_any_damage_leaves_files_redis_accepts(tmp_path_factory, template, offset, junk, drop_rdb, which):
    data = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(template, data, dirs_exist_ok=True)
    if drop_rdb:
        (data / "dump.rdb").unlink()
    files = aof_files(data)
    target = files[which % len(files)]
    raw = bytearray(target.read_bytes())
    at = offset % max(1, len(raw))
    raw[at:at + len(junk)] = junk
    target.write_bytes(bytes(raw))
    decision = recover_files(data)
    assert decision.source in ("aof", "rdb", "aof-truncated", "none"), decision
    assert all("\n" not in s for s in decision.steps)
    if decision.source != "none":
        check = subprocess.run(["redis-check-aof", str(find_aof(data))], capture_output=True, encoding="utf-8",
                               errors="replace")
        assert check.returncode == 0, (decision.steps, check.stdout[-300:])


def test_the_restored_rts_is_verified_against_the_newest_readable_journal_snapshot(tmp_path):
    import duckdb

    from reference.store.redis_recovery import published_outcomes, verify_against_journals

    folder = tmp_path / "backup" / "duckdb"
    folder.mkdir(parents=True)
    for taken, rows in ((1000, [("s1", "DONE", True)]),
                        (2000, [("s1", "DONE", True), ("s2", "REJECTED", True), ("s3", "DONE", False),
                                ("s4", "PENDING", True)])):
        con = duckdb.connect(str(folder / f"journal-A.h{taken:012d}.t{taken}.duckdb"))
        con.execute("CREATE TABLE intents (signal_id VARCHAR, state VARCHAR, published BOOLEAN)")
        con.execute("CREATE TABLE intent_log (seq BIGINT, signal_id VARCHAR, state VARCHAR, published BOOLEAN)")
        con.executemany("INSERT INTO intents VALUES (?, ?, ?)", rows[:1])
        # the rest only in the log, s5 first final+published then superseded by an unpublished newer row
        con.executemany("INSERT INTO intent_log VALUES (?, ?, ?, ?)",
                        [(i, *row) for i, row in enumerate(rows[1:])] + [(90, "s5", "DONE", True),
                                                                         (91, "s5", "DONE", False)])
        con.close()
    (folder / "journal-B.h000000000009.t9999.duckdb").write_bytes(b"not a database")   # damaged: skipped
    published, notes = published_outcomes([folder])
    assert published == {"s1": "DONE", "s2": "REJECTED"}     # the newest snapshot, published finals only
    assert any("2 published" in n for n in notes)

    class Pipe:
        def __init__(self):
            self.asked = []

        def exists(self, key):
            self.asked.append(key)

        def execute(self):
            return [int(k != "RTS:g:signal:s2") for k in self.asked]

    class Client:
        def pipeline(self, transaction=False):
            return Pipe()

    result = verify_against_journals(Client(), lambda sid: f"RTS:g:signal:{sid}", published)
    assert result == {"checked": 2, "missing": 1, "missing_examples": ["s2"]}


def test_up_runs_br1_on_the_files_an_earlier_run_left(data, tmp_path):
    """``tradedrill up`` on a stack folder whose AOF was damaged while it was down: the first start of the node's
    handle runs BR-1's order (tradedrill.services.redis.recover_on_start), so Redis starts from the RDB with every
    key instead of refusing the AOF; the decision is in recovery.json and one line of the node's log. A new folder
    is left alone."""
    from tradedrill.services import redis as redis_svc

    assert redis_svc.recover_on_start(data) is None   # nothing there yet: a new stack
    filled(data)
    damage_aof(data, random.Random(5))
    log = tmp_path / "logs" / "redis-1.log"
    decision = redis_svc.recover_on_start(data, log)
    assert decision["source"] == "rdb" and decision["aof_ok"] is False and decision["damaged_kept"]
    assert (data / redis_svc.RECOVERY_RECORD).exists() and "source=rdb" in log.read_text()
    assert started_keys(data) == {f"k{i}" for i in range(50)} | {"stream"}
