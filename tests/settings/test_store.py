"""The JSON settings store as a user meets it (CFG-1, CFG-2): every damage of the file loads the newest valid
backup and says so in one line; saves are atomic (a writer killed mid-write never costs a valid file); backups
rotate; the cap and the schema are enforced with errors that name the field."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from faults.files import CorruptConfig
from reference.settings import (ConfigPolicy, DumpPolicy, EASettings, EngineUserSettings, SettingsError,
                                SettingsStore, ea_settings, engine_settings)
from tradedrill.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def saved_three(folder: Path) -> SettingsStore:
    """A store whose file holds tcp_reconnect_s 5.0, after saves of 3.0 and 4.0."""
    store = ea_settings(folder)
    for value in (3.0, 4.0, 5.0):
        store.change(tcp_reconnect_s=value)
    return store


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _invalid_json(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b":", b"=", 1))


def _wrong_type(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["tcp_port"] = "9011"
    path.write_text(json.dumps(doc))


def _oversized(path: Path) -> None:
    # still valid JSON with valid settings: only the size is wrong
    path.write_bytes(path.read_bytes().rstrip() + b" " * 11_000 + b"\n")


def _missing(path: Path) -> None:
    path.unlink()


DAMAGE = {
    "truncated": (_truncate, "is not valid JSON: EOF while parsing"),
    "invalid-json": (_invalid_json, "is not valid JSON"),
    "wrong-type": (_wrong_type, "field 'tcp_port': Input should be a valid integer (got '9011')"),
    "oversized": (_oversized, "over the 10,240-byte cap (CFG-1)"),
    "missing": (_missing, "is missing"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_each_damage_loads_the_newest_valid_backup_and_says_so(tmp_path, damage):
    store = saved_three(tmp_path)
    hurt, reason = DAMAGE[damage]
    hurt(store.path)
    notices = []
    store.on_notice = notices.append

    loaded = store.load()

    assert loaded.settings.tcp_reconnect_s == 5.0          # the last saved change survives
    assert loaded.source == store.backups()[0]
    assert notices == [loaded.message]
    assert "\n" not in loaded.message
    assert str(store.path) in loaded.message and reason in loaded.message
    assert f"loaded the newest valid backup {store.backups()[0].name}" in loaded.message
    # repaired: the next load reads the file itself, quietly; the damaged file is kept as evidence
    again = store.load()
    assert again.message is None and again.source == store.path and again.settings.tcp_reconnect_s == 5.0
    assert store.damaged_path.exists() == (damage != "missing")


@pytest.mark.parametrize("mode", CorruptConfig.MODES)
@pytest.mark.parametrize("seed", range(5))
def test_the_projects_own_config_fault_is_survived(tmp_path, mode, seed):
    """What the config-corrupt scenario will inject (faults/files.py, left unhealed): the saved settings come back."""
    store = saved_three(tmp_path)
    saved = store.load().settings
    with CorruptConfig(store.path, mode, random.Random(seed), restore_on_heal=False) as fault:
        loaded = store.load()
    assert loaded.settings == saved
    assert loaded.fell_back and "\n" not in loaded.message, fault.details()
    assert f"loaded the newest valid backup {store.backups()[0].name}" in loaded.message


def test_a_damaged_newest_backup_is_skipped_for_the_next(tmp_path):
    store = saved_three(tmp_path)
    _invalid_json(store.path)
    _truncate(store.backups()[0])

    loaded = store.load()

    assert loaded.settings.tcp_reconnect_s == 4.0
    assert loaded.source == store.backups()[1]
    assert "skipped 1 damaged newer backup" in loaded.message
    assert len(loaded.problems) == 2


def test_nothing_valid_left_is_one_line_that_says_what_to_do(tmp_path):
    store = saved_three(tmp_path)
    for path in [store.path, *store.backups()]:
        _invalid_json(path)
    with pytest.raises(SettingsError) as caught:
        store.load()
    message = str(caught.value)
    assert "\n" not in message
    assert "none of its 3 backup(s) is valid" in message and "to start from the defaults" in message


def test_no_file_at_all_gives_the_defaults(tmp_path):
    loaded = engine_settings(tmp_path / "config").load()
    assert loaded.settings == EngineUserSettings()
    assert "is missing and has no backup: using the defaults" in loaded.message


def test_every_change_is_saved_and_three_backups_are_kept(tmp_path):
    store = engine_settings(tmp_path)
    for n in range(1, 7):
        store.change(deviation_points=n)
        assert json.loads(store.path.read_text())["deviation_points"] == n   # on disk at once
    backups = store.backups()
    assert [p.name for p in backups] == ["engine.json.000006.bak", "engine.json.000005.bak", "engine.json.000004.bak"]
    assert backups[0].read_bytes() == store.path.read_bytes()
    assert [json.loads(p.read_text())["deviation_points"] for p in backups] == [6, 5, 4]
    assert os.stat(store.path).st_mode & 0o777 == 0o600


def test_backups_kept_is_configuration(tmp_path):
    store = ea_settings(tmp_path, ConfigPolicy(backups_kept=5))
    for value in range(1, 9):
        store.change(tcp_reconnect_attempts=value)
    assert len(store.backups()) == 5


def test_a_change_with_a_wrong_value_names_the_field_and_writes_nothing(tmp_path):
    store = saved_three(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(SettingsError, match=r"field 'tcp_port': Input should be a valid integer") as caught:
        store.change(tcp_port="9011")
    assert caught.value.field == "tcp_port"
    with pytest.raises(SettingsError, match=r"field 'tcp_reconect_s' is not a known setting"):
        store.change(tcp_reconect_s=1.0)
    with pytest.raises(SettingsError, match=r"field 'symbols\[1\]': String should match pattern"):
        store.change(symbols=["EURUSD", "EUR USD"])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_settings_over_the_cap_are_refused_before_anything_is_written(tmp_path):
    store = ea_settings(tmp_path, ConfigPolicy(max_bytes=700))
    store.save(EASettings())
    before = store.path.read_bytes()
    with pytest.raises(SettingsError, match=r"over the 700-byte cap \(CFG-1\); nothing was written"):
        store.change(webhook_url="https://example.invalid/" + "x" * 400)
    assert store.path.read_bytes() == before and len(store.backups()) == 1


def test_a_temp_file_left_by_a_killed_writer_is_ignored_then_removed(tmp_path):
    store = saved_three(tmp_path)
    # what a writer killed between write and rename leaves: half a new version under a temp name
    left = tmp_path / f".ea.json.{os.getpid() + 1}.0badc0de.tmp"
    left.write_bytes(store.path.read_bytes()[:40])
    left_backup = tmp_path / f".ea.json.000004.bak.{os.getpid() + 1}.12345678.tmp"
    left_backup.write_bytes(b"{")

    loaded = store.load()
    assert loaded.message is None and loaded.settings.tcp_reconnect_s == 5.0
    store.change(tcp_reconnect_s=6.0)
    assert not left.exists() and not left_backup.exists()
    assert store.load().settings.tcp_reconnect_s == 6.0


WRITER = """
import sys
sys.path.insert(0, {root!r})
from reference.settings import ea_settings
store = ea_settings({folder!r})
n = 0
while True:
    n += 1
    store.change(tcp_reconnect_attempts=n)
"""


@pytest.mark.parametrize("round_", range(4))
def test_a_writer_killed_at_any_moment_leaves_a_valid_file(tmp_path, round_):
    code = WRITER.format(root=str(ROOT), folder=str(tmp_path))
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = ea_settings(tmp_path)
    target = 20 + 37 * round_     # a different moment each round
    try:
        wait_until(lambda: store.path.exists() and store.load().settings.tcp_reconnect_attempts >= target, 60.0,
                   f"the writer to save {target} changes")
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(10)
    assert writer.returncode == -signal.SIGKILL, writer.stderr.read().decode()[-500:]
    loaded = store.load()
    assert loaded.message is None, loaded.message       # the file itself, never a fallback
    assert loaded.settings.tcp_reconnect_attempts >= target
    backups = store.backups()
    assert 1 <= len(backups) <= 4          # killed between writing a backup and pruning: one extra until next save
    # the newest backup is the file, or (killed between the two writes) one save behind it
    newest = json.loads(backups[0].read_text())["tcp_reconnect_attempts"]
    assert loaded.settings.tcp_reconnect_attempts - newest in (0, 1)
    store.change(tcp_reconnect_attempts=1)
    assert len(store.backups()) == 3 and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_policies_name_a_bad_setting():
    with pytest.raises(SettingsError, match=r"ConfigPolicy.backups_kept = 0: must be an integer from 1"):
        ConfigPolicy(backups_kept=0)
    with pytest.raises(SettingsError, match=r"has no setting 'interval'"):
        DumpPolicy.from_mapping({"interval": 60})
    assert DumpPolicy.from_mapping({"interval_s": 3600}).interval_s == 3600.0
    defaults = DumpPolicy()
    assert (defaults.interval_s, defaults.dumps_kept, defaults.restore_target_s) == (21600.0, 14, 5.0)  # PG-1
    assert (ConfigPolicy().max_bytes, ConfigPolicy().backups_kept) == (10240, 3)                       # CFG-1


def test_every_damaged_copy_is_kept_timestamped_and_bounded(tmp_path):
    """A second damage does not overwrite the evidence of the first: each damaged file is kept under the UTC time it
    was found (<name>.<time>.damaged), the oldest deleted beyond damaged_kept."""
    store = saved_three(tmp_path / "config")
    store.policy = ConfigPolicy(damaged_kept=3)
    texts = []
    for i in range(5):
        text = f'{{"broken": {i}'
        store.path.write_text(text)
        texts.append(text)
        loaded = store.load()
        assert loaded.fell_back and store.damaged_path.name in loaded.message
    copies = store.damaged_copies()
    assert len(copies) == 3 and all(p.name.endswith(".damaged") and p.name != "ea.json.damaged" for p in copies)
    assert [p.read_text() for p in copies] == texts[:-4:-1]   # the newest three, newest first
    assert store.damaged_path == copies[0]
    with pytest.raises(SettingsError, match="damaged_kept"):
        ConfigPolicy(damaged_kept=0)
