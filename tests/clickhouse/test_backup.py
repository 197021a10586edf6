"""CH-3: ZSTD level 3 backups of the outcome table (full + incremental) into backup/clickhouse/, restored after a
loss to exactly the rows the table held; the 12 h / 1 h schedule and the 7-day retention."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from reference.store.clickhouse_backup import BackupError, BackupInfo, BackupSettings, ClickHouseBackups
from reference.store.clickhouse_sync import ClickHouseSync

from .conftest import Recorder, final_outcomes

pytestmark = pytest.mark.services
CH_HOST = 3
HOUR_MS = 3_600_000


def snapshot(server, table: str) -> list[str]:
    return sorted(server.sql(f"SELECT * FROM {table} FINAL FORMAT TabSeparated").splitlines())


@pytest.mark.parametrize("codec", ["backports.zstd", "zstd-cli"])
def test_full_and_incremental_backup_restore_the_table_after_a_loss(server, table, journal, tmp_path, codec):
    if codec == "zstd-cli" and not shutil.which("zstd"):
        pytest.skip("the zstd tool is not installed (apt-get install zstd)")
    rec = Recorder()
    target = server.target(table)
    sync = ClickHouseSync(journal, target, instance="A", emit=rec.emit, alert=rec.alert)
    folder = tmp_path / "backup" / "clickhouse"
    backups = ClickHouseBackups(server.target(table), BackupSettings(str(folder)), emit=rec.emit, codec=codec)
    t0 = 1_800_000_000_000

    final_outcomes(journal, 400)
    sync.send(journal.ch_unsynced(), now_ms=t0 - 120_000)   # before the overlap window
    assert backups.run_once(t0).kind == "full"
    assert backups.run_once(t0 + HOUR_MS - 1) is None                 # CH-3: incremental every 1 h
    final_outcomes(journal, 100, first=400)
    sync.send(journal.ch_unsynced(), now_ms=t0 + HOUR_MS - 1000)
    inc = backups.run_once(t0 + HOUR_MS)
    assert inc.kind == "incremental" and inc.rows == 100
    full = backups.entries()[0]
    assert full.rows == 400 and inc.base == full.file and full.level == 3 == inc.level
    for e in (full, inc):
        path = folder / e.file
        assert path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"            # a ZSTD frame
        if shutil.which("zstd"):
            assert subprocess.run(["zstd", "-t", "-q", str(path)]).returncode == 0
        assert e.bytes < e.raw_bytes
    before = snapshot(server, table)

    server.sql(f"DROP TABLE {table}")                                  # ClickHouse lost the table
    target.reset()
    out = backups.restore()
    assert out["files"] == [full.file, inc.file]
    assert snapshot(server, table) == before and target.count_final() == 500
    restored = rec.named("clickhouse_restore")[0]
    assert restored["seconds"] < 10                                    # EA-BR: historical data back in <10 s


def test_a_damaged_backup_is_named_and_nothing_is_inserted(server, table, journal, tmp_path):
    target = server.target(table)
    sync = ClickHouseSync(journal, target, instance="A")
    backups = ClickHouseBackups(server.target(table), BackupSettings(str(tmp_path / "bk")))
    final_outcomes(journal, 50)
    sync.send(journal.ch_unsynced())
    info = backups.take("full")
    path = tmp_path / "bk" / info.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    server.sql(f"TRUNCATE TABLE {table}")
    with pytest.raises(BackupError) as err:
        backups.restore()
    assert info.file in str(err.value) and "sha256" in str(err.value) and "\n" not in str(err.value)
    assert target.count_final() == 0


def test_schedule_full_every_12h_incremental_every_1h_and_7_days_kept(tmp_path):
    """The schedule and the retention on a manifest alone (no server needed to decide)."""
    folder = tmp_path / "bk"
    folder.mkdir()
    backups = ClickHouseBackups(target=type("T", (), {"table": "t", "close": lambda self: None})(),
                                settings=BackupSettings(str(folder)), codec="zstd-cli")
    t0 = 1_800_000_000_000
    assert backups.due(t0) == "full"
    entries, base = [], None
    for hour in range(0, 24 * 9):                                     # nine days of hourly backups
        now = t0 + hour * HOUR_MS
        kind = backups.due(now) if entries else "full"
        if kind is None:
            continue
        name = f"b{hour}-{kind}"
        base = name if kind == "full" else base
        (folder / name).write_bytes(b"x")
        entries.append(BackupInfo(name, kind, base, 0, now, now, 0, 1, 1, "", "zstd-cli", 3, 0.0))
        backups._write_manifest(entries)
    kinds = [e.kind for e in entries]
    assert kinds[:13] == ["full"] + ["incremental"] * 11 + ["full"]    # CH-3: 12 h / 1 h
    assert backups.due(t0 + 24 * 9 * HOUR_MS - HOUR_MS + 1) is None
    end = t0 + (24 * 9 - 1) * HOUR_MS
    gone = backups.prune(end)
    kept = backups.entries()
    assert gone and all((folder / g).exists() is False for g in gone)
    cutoff = end - 7 * 24 * HOUR_MS                                    # CH-3: 7 days kept ...
    assert {e.file for e in entries if e.taken_ms >= cutoff} <= {e.file for e in kept}
    assert kept[0].kind == "full" and cutoff - kept[0].taken_ms < 12 * HOUR_MS   # ... and the full they extend
    assert len(gone) + len(kept) == len(entries) and all(e.taken_ms < kept[0].taken_ms for e in entries
                                                         if e.file in gone)
    assert json.loads((folder / "manifest.json").read_text())["backups"][0]["file"] == kept[0].file
