"""``tradedrill up --services redis,clickhouse,mt5,engine,backend`` fills ClickHouse (issue 15, new-user report): the
engines' config had no ClickHouse sync under ``up`` (only the drills set it), so ClickHouse stayed without tables,
``/history`` said ``no_data`` and the panel "no trades yet" while ClickHouse was up. The engine config of a
topology with ClickHouse now names it, as the drills' did; the config is checked by the engine's own loader."""
from __future__ import annotations

import json
import stat
from pathlib import Path

from reference.engine.config import EngineConfig
from tests.backend.conftest import BLOCK
from tradedrill.credentials import StackSecrets
from tradedrill.services.engine import engine_config
from tradedrill.topology import Topology


def test_the_engine_config_of_up_syncs_to_the_topologys_clickhouse(tmp_path):
    topo = Topology.default(subnet=BLOCK, services=("redis", "clickhouse", "mt5", "engine", "backend"))
    secrets = StackSecrets.ensure(tmp_path)
    cfg = engine_config(topo, None, secrets)
    ch = topo.node("clickhouse")
    assert cfg["clickhouse_url"] == f"http://{ch.address}:{ch.ports['http']}"
    assert cfg["clickhouse_username"] == secrets.clickhouse().username
    password_file = Path(cfg["clickhouse_password_file"])
    assert password_file.read_text().strip() == secrets.clickhouse().password
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert secrets.clickhouse().password not in json.dumps(cfg)       # the file is named, never the password
    (tmp_path / "engine.json").write_text(json.dumps(cfg))
    loaded = EngineConfig.load(tmp_path / "engine.json", overrides={"instance": "A", "state_dir": str(tmp_path)})
    assert loaded.clickhouse_url == cfg["clickhouse_url"]


def test_without_clickhouse_the_engines_do_not_sync_and_overrides_still_win(tmp_path):
    secrets = StackSecrets.ensure(tmp_path)
    plain = engine_config(Topology.default(subnet=BLOCK, services=("redis", "mt5", "engine")), None, secrets)
    assert "clickhouse_url" not in plain
    topo = Topology.default(subnet=BLOCK, services=("redis", "clickhouse", "mt5", "engine"))
    assert engine_config(topo, {"clickhouse_url": ""}, secrets)["clickhouse_url"] == ""
