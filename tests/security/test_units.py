"""The pieces of the lock-down without servers: secrets files, rendered configs, the engine's credentials."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from reference.engine.config import ConfigError, EngineConfig
from reference.engine.redislink import RedisLink, RedisUnavailable
from tradedrill.credentials import REDIS_ROLES, StackSecrets, sha256_hex, write_private
from tradedrill.process import node_environment
from tradedrill.services import clickhouse, postgres
from tradedrill.services import engine as engine_svc
from tradedrill.services import redis as redis_svc
from tradedrill.topology import Topology

TOPO = Topology.default(subnet="127.0.62", services=("redis", "clickhouse", "postgres", "mt5", "engine"))


def test_secrets_are_made_once_per_run_folder_and_private(tmp_path):
    first = StackSecrets.ensure(tmp_path / "run")
    again = StackSecrets.ensure(tmp_path / "run")
    assert first.values() == again.values() and len(set(first.values())) == len(REDIS_ROLES) + 2
    assert all(len(v) >= 32 for v in first.values())
    other = StackSecrets.ensure(tmp_path / "other")
    assert not set(other.values()) & set(first.values())
    folder = StackSecrets.folder_of(tmp_path / "run")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert first.password_file("engine").read_text().strip() == first.redis("engine").password
    assert first.redis("engine").password not in repr(first.redis("engine"))


def test_write_private_is_atomic_and_exclusive_when_asked(tmp_path):
    path = tmp_path / "f"
    assert write_private(path, "one", exclusive=True)
    assert not write_private(path, "two", exclusive=True) and path.read_text() == "one"
    assert write_private(path, "three") and path.read_text() == "three"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_rendered_configs_hold_hashes_outside_secrets_and_lock_every_door(tmp_path):
    secrets = StackSecrets.ensure(tmp_path)
    data = tmp_path / "data" / "x"
    acl = "\n".join(redis_svc.acl_lines(secrets))
    sentinel_acl = "\n".join(redis_svc.acl_lines(secrets, sentinel=True))
    for text in (acl, sentinel_acl, clickhouse.users_xml(secrets.clickhouse())):
        assert not any(v in text for v in secrets.values())
    assert acl.splitlines()[0].startswith("user default off ") and "nopass" not in acl
    assert sentinel_acl.splitlines()[0] == "user default off resetkeys resetchannels -@all"
    for role in REDIS_ROLES:
        assert f"user {role} on #{sha256_hex(secrets.redis(role).password)} " in acl
    assert sha256_hex(secrets.clickhouse().password) in clickhouse.users_xml(secrets.clickhouse())
    primary, replica = TOPO.node("redis-1"), TOPO.node("redis-2")
    for spec in (primary, replica):
        conf = redis_svc.render(spec, TOPO, data, secrets)
        assert "protected-mode yes" in conf and f"aclfile " in conf
        assert f"masteruser replica\nmasterauth {secrets.redis('replica').password}\n" in conf
    conf = redis_svc.render(TOPO.node("sentinel-1"), TOPO, data, secrets)
    peer = secrets.redis("sentinel").password
    assert f"sentinel auth-user mymaster sentinel\nsentinel auth-pass mymaster {peer}\n" in conf
    assert f"sentinel sentinel-user sentinel\nsentinel sentinel-pass {peer}\n" in conf
    # the configs that carry passwords are in secrets/
    assert StackSecrets.folder_of(tmp_path) in redis_svc.config_path(primary, tmp_path).parents
    # rendered without a run folder: locked with passwords nobody knows
    assert "masterauth " in redis_svc.render(primary, TOPO, data)


def test_engine_key_patterns_cover_the_contract_and_nothing_else():
    from fnmatch import fnmatchcase

    from reference.engine.contract import Keys

    patterns = redis_svc.engine_key_patterns()
    for keys in (Keys(group="engine"), Keys(group="g7", rtss="g7:RTSS", rtrs="g7:RTRS", alerts="g7:ALERTS")):
        for key in (keys.rtss, keys.rtrs, keys.alerts, keys.rts_signal("s-1"), keys.rts_results,
                    keys.rts_positions, keys.ris_session, keys.ris_suspended, *keys.lease_keys(), keys.lease_in_flight):
            assert any(fnmatchcase(key, p) for p in patterns), key
    for key in ("drill:writes:1", "config", "users", "RTS", "lease"):
        assert not any(fnmatchcase(key, p) for p in patterns), key


def test_engine_config_names_the_password_file_and_the_engine_reads_it(tmp_path):
    secrets = StackSecrets.ensure(tmp_path)
    cfg = engine_svc.engine_config(TOPO, {"heartbeat_s": 0.5}, secrets)
    assert not any(v in json.dumps(cfg) for v in secrets.values())
    engine = EngineConfig.from_mapping(cfg)
    assert engine.redis_credentials() == ("engine", secrets.redis("engine").password)
    assert engine.sentinel_credentials() == ("engine", secrets.redis("engine").password)
    assert secrets.redis("engine").password not in repr(engine)
    assert "redis_password" not in engine_svc.engine_config(TOPO)


def test_engine_password_options(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        EngineConfig(redis_password="x", redis_password_file="/f")
    assert EngineConfig(redis_username="u", redis_password="p").redis_credentials() == ("u", "p")
    assert "secret-p" not in repr(EngineConfig(redis_password="secret-p"))
    missing = EngineConfig(sentinels=[["127.0.62.5", 26379]], redis_password_file=str(tmp_path / "none"),
                           sentinel_password_file=str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="redis_password_file"):
        missing.redis_credentials()
    with pytest.raises(RedisUnavailable, match="sentinel_password_file"):
        RedisLink(missing).discover()
    env = EngineConfig.load(env={"TRADEDRILL_ENGINE_REDIS_PASSWORD": "123", "TRADEDRILL_ENGINE_REDIS_USERNAME": "e"})
    assert env.redis_credentials() == ("e", "123")  # a password that looks like a number stays a string


def test_postgres_clients_name_the_password_file(tmp_path):
    secrets = StackSecrets.ensure(tmp_path)
    spec = TOPO.node("postgres")
    passfile = secrets.pgpass(spec.address, spec.port)
    dsn = postgres.dsn(spec, passfile=passfile)
    assert secrets.postgres().password not in dsn and f"passfile='{passfile}'" in dsn
    assert passfile.read_text() == f"{spec.address}:{spec.port}:*:postgres:{secrets.postgres().password}\n"
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert "trust" not in postgres.HBA and "scram-sha-256" in postgres.HBA


def test_a_node_environment_is_minimal(monkeypatch):
    monkeypatch.setenv("TRADEDRILL_ENGINE_REDIS_PASSWORD", "leak")
    monkeypatch.setenv("TZ", "UTC")
    env = node_environment()
    assert set(env) <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "USER", "LOGNAME"} and env["TZ"] == "UTC"
    if os.geteuid() == 0:
        import pwd

        as_redis = node_environment("redis")
        assert as_redis["HOME"] == pwd.getpwnam("redis").pw_dir and as_redis["USER"] == "redis"


def test_the_secrets_of_another_user_are_a_sentence(tmp_path):
    path = StackSecrets.path_of(tmp_path)
    path.parent.mkdir(parents=True)
    Path(path).write_text("{not json")
    from tradedrill.credentials import SecretsError

    with pytest.raises(SecretsError, match="damaged"):
        StackSecrets.load(tmp_path)
