"""The outcome -> row mapping (CH-1): whatever strings and numbers a signal or a broker reply carries, the INSERT
succeeds and ClickHouse gives back exactly what was sent; engine settings that would leak or misplace a secret
are refused with one line."""
from __future__ import annotations

import json
import math
import uuid

import pytest
from hypothesis import given, settings, strategies as st

from reference.engine.config import ConfigError, EngineConfig
from reference.engine.journal import Intent
from reference.store.clickhouse_sync import COLUMN_NAMES, from_engine_config, outcome_row

pytestmark = pytest.mark.services
CH_HOST = 4

text = st.text(max_size=40)                     # any Unicode: quotes, tabs, newlines, NUL, emoji
numbers = st.one_of(st.integers(min_value=-10**30, max_value=10**30), st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(text, numbers, st.booleans(), st.none())
signals = st.fixed_dictionaries({"account": scalars, "symbol": scalars, "side": scalars, "volume": scalars},
                                optional={"note": scalars, "extra": st.dictionaries(text, scalars, max_size=3)})
results = st.fixed_dictionaries({"status": text, "code": st.one_of(text, st.integers()), "reason": text,
                                 "order": st.one_of(st.none(), st.integers(min_value=1, max_value=2**63), text),
                                 "deal": st.one_of(st.none(), st.integers(min_value=0, max_value=2**63)),
                                 "price": numbers})


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.fixture(scope="module")
def shared_table(server):
    target = server.target("mapping_outcomes")
    target.ensure_table()
    return target


@settings(max_examples=60, deadline=None)
@given(signal=signals, result=results, comment=text, broker=text, state=st.sampled_from(["DONE", "REJECTED"]),
       attempt=st.integers(min_value=0, max_value=2**63 - 1),
       updated_ms=st.integers(min_value=0, max_value=4_294_967_295_000))
def test_any_outcome_is_inserted_and_read_back_unmangled(shared_table, signal, result, comment, broker, state,
                                                         attempt, updated_ms):
    sid = f"sig-{uuid.uuid4().hex}"
    broker = f"{sid}/{broker}"   # a key of its own: an equal (broker, order) would be the same trade
    intent = Intent(signal_id=sid, entry_id="1-0", signal=signal, state=state, attempt=attempt, comment=comment,
                    broker=broker, result=result, updated_ms=updated_ms)
    row = outcome_row(intent, "A", 1_800_000_000_000)
    shared_table.insert([row])
    got = shared_table.query(f"SELECT {', '.join(COLUMN_NAMES)} FROM mapping_outcomes FINAL "
                             f"WHERE signal_id = %(s)s", {"s": sid})
    assert len(got) == 1
    back = dict(zip(COLUMN_NAMES, got[0]))
    sent = dict(zip(COLUMN_NAMES, row))
    for name in COLUMN_NAMES:
        if name in ("volume", "price"):
            assert same_float(back[name], sent[name]), name
        elif name == "final_at":
            assert int(back[name].replace(tzinfo=sent[name].tzinfo).timestamp()) == updated_ms // 1000
        else:
            assert back[name] == sent[name], name
    assert back["reason"] == result["reason"] and back["comment"] == (comment or "") and back["broker"] == broker
    assert back["signal"] == json.dumps(signal) and back["result"] == json.dumps(result)
    assert back["attempts"] == attempt and back["version"] == updated_ms


def test_engine_settings_refuse_secrets_in_the_url_and_name_the_key(tmp_path):
    base = {"state_dir": str(tmp_path)}
    assert from_engine_config(EngineConfig.from_mapping(base), None, emit=print, alert=print) is None  # off
    cases = {
        "http://default:hunter2@127.0.74.4:8123": "clickhouse_password_file",
        "ftp://127.0.74.4:8123": "use http://host:port",
        "http://127.0.74.4:notaport": "port must be a number",
    }
    for url, says in cases.items():
        with pytest.raises(ConfigError) as err:
            EngineConfig.from_mapping({**base, "clickhouse_url": url})
        assert says in str(err.value) and "\n" not in str(err.value) and "hunter2" not in str(err.value)
    with pytest.raises(ConfigError, match="clickhouse_password_file .*no such file"):
        EngineConfig.from_mapping({**base, "clickhouse_url": "http://127.0.74.4:8123",
                                   "clickhouse_password_file": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="clickhouse_backup_zstd_level"):
        EngineConfig.from_mapping({**base, "clickhouse_url": "http://127.0.74.4:8123",
                                   "clickhouse_backup_zstd_level": 40})
    cfg = EngineConfig.from_mapping({**base, "clickhouse_url": "http://127.0.74.4:8123/history"})
    history = from_engine_config(cfg, _NoJournal(), emit=print, alert=print)
    assert history.sync.settings.database == "history"
    assert history.backups.folder == tmp_path / "backup" / "clickhouse"   # CH-3's folder under the state dir


class _NoJournal:
    def failed_syncs(self, target=None):
        return []
