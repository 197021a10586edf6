"""A full disk under the journal (issue 13, disk-full; DDB-5) is not damage: a write is refused with one clear line
and nothing in memory changes; the health check stays quiet and nothing is moved into the damaged-evidence folder;
an open on a full disk touches nothing; once space is back the journal writes again and reopens without a repair.
Each test mounts a small tmpfs of its own (root only) and unmounts it by its handle."""
from __future__ import annotations

import errno
import json
import os

import pytest

from faults.files import FillFilesystem, TmpfsMount
from reference.engine.events import EventLog
from reference.engine.journal import Intent, Journal, JournalFull
from reference.store.keeper import StoreKeeper
from reference.store.nospace import SpaceTolerantLog, no_space

from .conftest import digest
from .test_keeper import Recorder

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a tmpfs of the test's own needs root")


def _intent(i: int) -> Intent:
    return Intent(signal_id=f"s{i}", entry_id=f"{i}-0", signal={"symbol": "EURUSD"}, state="SENDING")


@pytest.fixture
def disk(tmp_path):
    with TmpfsMount(tmp_path / "state", 8 << 20) as mount:
        yield mount.folder


def _damaged(folder):
    return list((folder / "backup" / "duckdb").glob("damaged/*"))


def test_a_write_on_a_full_disk_is_refused_and_lands_once_space_returns(disk):
    j = Journal(disk / "journal-A.duckdb")
    rec = Recorder()
    keeper = StoreKeeper(j, emit=rec.emit, alert=rec.alert)
    try:
        j.put_many([_intent(i) for i in range(50)])
        j.snapshot()
        fill = FillFilesystem(disk)
        fill.inject()
        refused = 50   # the signal whose write is refused (the first one when no WAL block has room left)
        with pytest.raises(JournalFull) as err:
            for i in range(50, 5000):   # the few KB the filler could not take, if any, go first
                j.put(_intent(i))
                refused = i + 1
        line = str(err.value)
        assert "\n" not in line and str(j.path) in line and "no space left" in line and "free space" in line
        assert j.get(f"s{refused}") is None                 # not in memory: the caller never sees it as durable
        assert j.disk_full and j.health() is None            # not damage
        keeper.check_health()
        keeper.watch_disk()
        keeper.run_once(1e9)
        assert rec.named("journal_unhealthy") == [] and _damaged(disk) == []
        kinds = [k for k, _m, _f in rec.alerts]
        assert kinds.count("journal_disk_full") == 1 and set(kinds) <= {"journal_disk_full", "snapshot_failed"}
        fill.heal()
        j.put(_intent(refused))
        assert j.disk_full == ""
        keeper.watch_disk()
        assert len(rec.named("journal_disk_ok")) == 1
        committed = j.hwm
    finally:
        j.close()
    again = Journal(disk / "journal-A.duckdb")
    try:
        assert again.repair is None and again.hwm >= committed and again.get(f"s{refused}") is not None
    finally:
        again.close()
    assert _damaged(disk) == []


def test_opening_on_a_full_disk_touches_nothing(disk):
    path = disk / "journal-A.duckdb"
    j = Journal(path)
    j.put_many([_intent(i) for i in range(50)])
    j.snapshot()
    j.close()
    before = {p.name: digest(p) for p in disk.iterdir() if p.is_file()}
    fill = FillFilesystem(disk)
    fill.inject()
    try:
        with pytest.raises(JournalFull, match="cannot be opened: no space left.*nothing was moved") as err:
            Journal(path)
        assert err.value.exit_status == 75 and "\n" not in str(err.value)
        after = {p.name: digest(p) for p in disk.iterdir() if p.is_file() and p.name != FillFilesystem.FILLER
                 and p.stat().st_size}                                        # DuckDB may create an empty WAL
        assert after == {k: v for k, v in before.items() if (disk / k).stat().st_size} and _damaged(disk) == []
    finally:
        fill.heal()
    reopened = Journal(path)
    try:
        assert reopened.repair is None and len(reopened.in_flight()) == 50
    finally:
        reopened.close()


def test_the_event_log_drops_events_on_a_full_disk_and_says_how_many(disk):
    path = disk / "events-A.jsonl"
    log = SpaceTolerantLog(EventLog(path, "A"))
    log("before")
    fill = FillFilesystem(disk)
    fill.inject()
    try:
        for i in range(2000):
            log("while_full", n=i, pad="x" * 200)   # never raises
        assert log.dropped > 0
    finally:
        fill.heal()
    log("after")
    log.close()
    events = [json.loads(line) for line in path.read_text().splitlines()]   # every line whole
    names = [e["event"] for e in events]
    assert names[0] == "before" and names[-1] == "after"
    dropped = [e for e in events if e["event"] == "events_dropped"]
    assert dropped and all("No space left" in e["error"] for e in dropped)
    written = [e["n"] for e in events if e["event"] == "while_full"]
    assert len(written) == len(set(written))                                 # none twice
    # none vanishes uncounted (an events_dropped line refused while its bytes stayed in the file's buffer is
    # written later, so a count may be told twice)
    assert len(written) + sum(e["count"] for e in dropped) >= 2000


def test_no_space_is_told_from_other_errors():
    assert no_space(OSError(errno.ENOSPC, "No space left on device"))
    assert no_space(RuntimeError('Could not write file "x.wal": No space left on device'))
    assert not no_space(OSError(errno.EIO, "Input/output error"))
