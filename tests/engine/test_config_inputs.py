"""Engine configuration from TOML, JSON, ``--set`` and the environment (issue 10): a wrong type is a ConfigError
naming the key and the type, never a TypeError traceback; a config that loads is usable."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.engine.config import ConfigError, EngineConfig

JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) |
                    st.text(max_size=8), lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
KEYS = st.sampled_from(sorted(f for f in EngineConfig.__dataclass_fields__ if f not in ("instance",)))


@given(st.dictionaries(KEYS, JSON, max_size=4))
@settings(max_examples=400, deadline=None, database=None)
def test_any_values_load_or_fail_with_a_config_error(data):
    try:
        cfg = EngineConfig.from_mapping({"instance": "A", **data})
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    for key, value in data.items():  # what loaded has the declared type
        got = getattr(cfg, key)
        if isinstance(got, float):
            assert isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.mark.parametrize("data, message", [
    ({"lease_ttl_s": "abc"}, "lease_ttl_s = 'abc' must be a float"),
    ({"read_count": 1.5}, "read_count = 1.5 must be an int"),
    ({"retry_backoff_s": ["x"]}, "retry_backoff_s[0] = 'x' must be a float"),
    ({"brokers": "redis"}, "brokers = 'redis' must be a list"),
    ({"heartbeat_s": True}, "heartbeat_s = True must be a float"),
    ({"nope": 1}, "unknown configuration key(s): nope"),
])
def test_regressions(data, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        EngineConfig.from_mapping({"instance": "A", **data})


def test_environment_and_file_go_through_the_same_checks(tmp_path):
    path = tmp_path / "engine.json"
    path.write_text(json.dumps({"lease_ttl_s": "abc"}))
    with pytest.raises(ConfigError, match="lease_ttl_s"):
        EngineConfig.load(path, env={})
    with pytest.raises(ConfigError, match="heartbeat_s = 'fast'"):
        EngineConfig.load(None, env={"TRADEDRILL_ENGINE_HEARTBEAT_S": "fast"}, overrides={"instance": "A"})


@pytest.mark.parametrize("data, message", [
    ({"sentinels": [[1, 2, 3]]}, "sentinels[0]"),
    ({"brokers": [{"name": "p", "params": "abc"}]}, "brokers.params = 'abc' must be a dict"),
    ({"brokers": [{"name": "p", "factory": "garbage"}]}, "must be 'module:callable'"),
    ({"brokers": [{"name": "p", "login": "abc"}]}, "brokers.login = 'abc' must be an int"),
    ({"brokers": ["x"]}, "brokers[0] = 'x' must be a dict"),
])
def test_nested_values_are_checked_on_load(data, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        EngineConfig.from_mapping({"instance": "A", **data})
