"""Hypothesis fuzz of the settings loader (arbitrary bytes and arbitrary JSON: a value or one SettingsError line,
never a traceback; a damaged file always falls back to the backup) and of the login sealing (arbitrary strings come
back unchanged; anything altered or sealed for another broker does not open)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from reference.settings import (BrokerLogin, CredentialsError, EASettings, EngineUserSettings, LoginKey,
                                SettingsError, ea_settings, parse_settings)
from reference.settings.logins import BROKER_NAME

MODELS = [EASettings, EngineUserSettings]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30)
# near-valid documents: real field names with arbitrary values, so the fuzz reaches past "unknown field"
FIELDS = sorted(set(EASettings.model_fields) | set(EngineUserSettings.model_fields))
near_valid = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=300)   # surrogates and NUL included


def _one_line_or_value(data: bytes, model) -> None:
    try:
        value = parse_settings(data, model, max_bytes=10 * 1024, source="ea.json")
    except SettingsError as err:
        text = str(err)
        assert text and "\n" not in text and "Traceback" not in text
        assert text.startswith("ea.json")
        return
    assert isinstance(value, model)


@pytest.mark.parametrize("model", MODELS)
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_load_or_give_one_line(model, data):
    _one_line_or_value(data, model)


@pytest.mark.parametrize("model", MODELS)
@given(doc=json_values | near_valid)
def test_arbitrary_json_loads_or_gives_one_line(model, doc):
    _one_line_or_value(json.dumps(doc).encode(), model)


@given(doc=near_valid)
def test_a_rejected_field_is_named(doc):
    try:
        parse_settings(json.dumps(doc), EASettings, source="ea.json")
    except SettingsError as err:
        if err.field is not None:
            assert f"'{err.field}'" in str(err)
            assert err.field.split("[")[0].split(".")[0] in doc


@given(data=st.binary(max_size=12_000))
def test_any_damage_of_the_file_falls_back_to_the_saved_settings(tmp_path_factory, data):
    folder = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    store = ea_settings(folder)
    store.on_notice = lambda message: None
    saved = store.change(tcp_reconnect_attempts=7)
    store.path.write_bytes(data)
    loaded = store.load()                      # never raises: the backup is valid
    if loaded.message is None:
        assert loaded.source == store.path     # the bytes happened to be valid settings
    else:
        assert loaded.settings == saved and "\n" not in loaded.message


KEY = LoginKey.generate()
names = st.from_regex(BROKER_NAME, fullmatch=True)


@given(name=names, login=st.integers(1, 2**63 - 1), password=any_text, server=any_text)
def test_any_login_comes_back_unchanged(name, login, password, server):
    original = BrokerLogin(login, password, server)
    sealed = KEY.seal(name, original)
    assert KEY.unseal(name, sealed) == original
    assert password.encode("utf-8", "surrogatepass") not in sealed or len(password) < 4


@given(name=names, other=names, password=any_text, flip=st.integers(0, 10_000))
def test_an_altered_or_moved_login_does_not_open(name, other, password, flip):
    sealed = bytearray(KEY.seal(name, BrokerLogin(1, password, "s")))
    assume(other != name)
    with pytest.raises(CredentialsError, match="does not open"):
        KEY.unseal(other, bytes(sealed))
    sealed[flip % len(sealed)] ^= 0x01
    with pytest.raises(CredentialsError):
        KEY.unseal(name, bytes(sealed))
