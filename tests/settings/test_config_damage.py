"""A damaged settings file at engine start (CFG-1/2, issue 13): ``faults.config`` damages it four ways (a cut, broken
JSON, a wrong type, past the 10 KB cap) and ``load_user_settings`` (what ``engine run`` calls) loads the newest
valid backup, says so in one line naming the file, the problem and the backup, keeps the damaged file and rewrites
it. Fuzzed: any valid settings, any seed, any mode: the damage is always refused and the backup always loaded."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faults.config import CorruptJSON, CrashCorruptConfig, damage
from faults.core import FaultError
from reference.engine.config import EngineConfig
from reference.settings import EngineUserSettings, SettingsError, engine_settings, load_user_settings, parse_settings

WORDS = {"truncate": "not valid JSON", "invalid-json": "not valid JSON", "wrong-type": "field '", "oversize": "cap"}


def seeded(folder, last: EngineUserSettings | None = None):
    store = engine_settings(folder / "config")
    for deviation in (17, 18, 19):
        store.save(EngineUserSettings(deviation_points=deviation))
    store.save(last or EngineUserSettings(deviation_points=33, filling="fok"))
    return store


def engine_config(state_dir) -> EngineConfig:
    return EngineConfig.load(None, overrides={"state_dir": str(state_dir), "user_settings_dir": "config"})


@pytest.mark.parametrize("mode", CorruptJSON.MODES)
def test_each_damage_loads_the_newest_backup_with_a_clear_line(tmp_path, mode):
    store = seeded(tmp_path)
    fault = CorruptJSON(store.path, mode, random.Random(f"7:{mode}"))
    fault.inject()
    with pytest.raises(SettingsError):
        parse_settings(store.path.read_bytes(), EngineUserSettings, max_bytes=10 * 1024)
    cfg = engine_config(tmp_path)
    loaded, info = load_user_settings(cfg)
    assert loaded.deviation_points == 33 and (cfg.deviation_points, cfg.filling) == (33, "fok")   # applied
    assert info["fell_back"] and info["source"].endswith("engine.json.000004.bak")
    message = info["message"]
    assert "\n" not in message and "engine.json" in message and WORDS[mode] in message
    assert "engine.json.000004.bak" in message and "rewritten" in message
    assert info["damaged_kept"] and store.damaged_path.exists() and len(info["backups"]) == 3
    again, info2 = load_user_settings(engine_config(tmp_path))    # the file is valid again
    assert again == loaded and not info2["fell_back"] and info2["message"] is None


def test_no_settings_dir_loads_nothing_and_no_valid_file_is_one_line(tmp_path):
    assert load_user_settings(EngineConfig.load(None, overrides={"state_dir": str(tmp_path)})) == (None, {})
    store = engine_settings(tmp_path / "config")
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{")
    with pytest.raises(SettingsError) as err:
        load_user_settings(engine_config(tmp_path))
    assert "\n" not in str(err.value) and "engine.json" in str(err.value)


def test_the_crash_fault_damages_first_then_kills(tmp_path):
    store = seeded(tmp_path)
    order = []

    class Node:
        name, pid, alive = "engine-x", 4242, True

        def kill(self):
            order.append(("kill", store.path.read_bytes()))
            self.alive = False

        def is_alive(self):
            return self.alive

        def start(self):
            order.append(("start", None))
            self.alive = True

        def wait_ready(self, timeout=None):
            pass

    fault = CrashCorruptConfig(Node(), store.path, "invalid-json", random.Random(1))
    fault.inject()
    with pytest.raises(SettingsError):   # the file was already damaged when the process died
        parse_settings(order[0][1], EngineUserSettings)
    fault.heal()
    assert [o[0] for o in order] == ["kill", "start"]
    assert fault.details()["node"] == "engine-x" and fault.details()["mode"] == "invalid-json"
    with pytest.raises(FaultError):
        CorruptJSON(store.path, "melt", random.Random(1))


_settings = st.builds(
    EngineUserSettings, trading_enabled=st.booleans(),
    default_volume=st.floats(0.01, 1.0), max_volume=st.floats(1.0, 1000.0),
    deviation_points=st.integers(0, 100_000), filling=st.sampled_from(["fok", "ioc", "return"]),
    signal_max_age_s=st.floats(0, 86400), symbols=st.lists(st.from_regex(r"[A-Z]{6}", fullmatch=True), min_size=1,
                                                           max_size=20, unique=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(current=_settings, mode=st.sampled_from(CorruptJSON.MODES), seed=st.integers(0, 2**32))
def test_fuzz_any_damage_is_refused_and_the_backup_loaded(tmp_path_factory, current, mode, seed):
    folder = tmp_path_factory.mktemp("fuzz")
    store = seeded(folder, current)
    damaged, what = damage(store.path.read_bytes(), mode, random.Random(seed))
    assert what
    store.path.write_bytes(damaged)
    with pytest.raises(SettingsError):
        parse_settings(damaged, EngineUserSettings, max_bytes=10 * 1024)
    loaded, info = load_user_settings(engine_config(folder))
    assert loaded == current and info["fell_back"] and WORDS[mode] in info["message"]
