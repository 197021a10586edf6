"""Settings a user edited by hand (CFG-2: validated on load, an error that names the field): a key written twice
(JSON keeps the last one silently, so a ``"trading_enabled": false`` added at the top to stop trading was ignored)
and a file saved with a UTF-8 byte order mark (Windows Notepad: "expected value at line 1 column 1" named nothing)."""
from __future__ import annotations

import pytest

from reference.settings.errors import SettingsError
from reference.settings.schema import EngineUserSettings, dump_settings, parse_settings
from reference.settings.store import SettingsStore


def test_a_key_written_twice_is_refused_naming_the_field():
    text = dump_settings(EngineUserSettings()).decode()
    edited = text.replace("{", '{\n  "trading_enabled": false,', 1)
    with pytest.raises(SettingsError) as err:
        parse_settings(edited, EngineUserSettings, source="engine.json")
    message = str(err.value)
    assert err.value.field == "trading_enabled" and "twice" in message and "engine.json" in message, message
    assert "\n" not in message


def test_a_key_written_twice_in_a_file_falls_back_to_the_backup_and_says_so(tmp_path):
    store = SettingsStore(tmp_path / "engine.json", EngineUserSettings)
    store.save(EngineUserSettings(trading_enabled=False))
    path = tmp_path / "engine.json"
    path.write_text(path.read_text().replace("{", '{\n  "trading_enabled": true,', 1))
    loaded = store.load()
    assert loaded.fell_back and loaded.settings.trading_enabled is False
    assert "'trading_enabled'" in loaded.message and "twice" in loaded.message, loaded.message


def test_a_byte_order_mark_is_named():
    raw = b"\xef\xbb\xbf" + dump_settings(EngineUserSettings())
    with pytest.raises(SettingsError) as err:
        parse_settings(raw, EngineUserSettings, source="engine.json")
    assert "byte order mark" in str(err.value), str(err.value)
