"""The reference trade engine (``reference/engine/``) as local processes: one per ``engine`` node of the topology.

Two things live here, so that nothing else writes them again:

- ``engine_config(topo, overrides)``: the engine's configuration for a topology. Sentinels and the master name come
  from the topology's Redis service, the group from ``engine.group``, and one broker per ``mt5`` node, primary
  first (``reference.mt5.port:open_terminal`` with ``{"kind": "simulator", "host", "port", "call_timeout"}``,
  login ``mt5.account``; the broker's name is its role without ``broker-``: ``primary``, ``backup``).
  ``overrides`` are ``EngineConfig`` fields and win (scaled-down timings in tests, another group, ...).
  ``secrets`` (the run folder's ``tradedrill.credentials.StackSecrets``) makes the engine log in to Redis and the
  Sentinels as the ``engine`` user; the config names the file holding its password (``redis_password_file``), never
  the password, so a config file in a run folder holds no secret.
- ``build_node(spec, topo, run_dir, registry, config_path=...)``: the ``ProcessNode`` of one instance, started as
  ``python -m reference.engine run --config <config_path> --instance <A|B> --state-dir <run_dir>/engines/<node>``
  (``command`` replaces ``python -m reference.engine``: tests run deliberately broken engines that way, so
  production code carries no switch for them). Ready once its event log ``events-<instance>.jsonl`` exists in its
  state dir; its process log is ``<run_dir>/logs/<node>.log``. ``state_tmpfs_bytes`` > 0 (root only): before its
  first start a tmpfs of that size is mounted over its state dir (``faults.files.TmpfsMount``: the disk-full drill
  fills it), kept in ``extra["state_tmpfs"]``; :func:`unmount_state` copies the files back and unmounts it.

An engine binds no port (``spec.port`` is 0); its address, from the topology's allocator, is the one it will send
from once faults single it out by address.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from tradedrill.credentials import StackSecrets, private_dir
from tradedrill.process import PidRegistry, ProcessNode
from tradedrill.topology import ENGINE_INSTANCES, NodeSpec, Topology

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER_FACTORY = "reference.mt5.port:open_terminal"
DEFAULT_COMMAND = (sys.executable, "-m", "reference.engine")


def instance_of(spec: NodeSpec) -> str:
    """The engine instance name of an engine node: ``engine-a`` -> ``A``."""
    instance = spec.name.rpartition("-")[2].upper()
    if spec.kind != "engine" or not instance:
        raise ValueError(f"{spec.name} is not an engine node (kind {spec.kind})")
    return instance


def node_name(instance: str) -> str:
    """The node name of an engine instance: ``A`` -> ``engine-a``."""
    return f"engine-{instance.lower()}"


def state_dir(spec: NodeSpec, run_dir: Path) -> Path:
    """Where the instance keeps its journal and its event log."""
    return Path(run_dir) / "engines" / spec.name


def release_on_exit(spec: NodeSpec, run_dir: Path, config_path: Path):
    """The supervisor's ``on_exit`` hook of an engine node: once its process is reaped, release the lease it held
    (``reference.engine.handoff``), so the passive instance takes over without waiting out the TTL (issue 11)."""
    from reference.engine.config import EngineConfig
    from reference.engine.handoff import release_after_exit

    overrides = {"instance": instance_of(spec), "state_dir": str(state_dir(spec, run_dir))}

    def hook(_program, _returncode) -> str:
        return release_after_exit(EngineConfig.load(config_path, overrides=overrides))

    return hook


def events_path(spec: NodeSpec, run_dir: Path) -> Path:
    return state_dir(spec, run_dir) / f"events-{instance_of(spec)}.jsonl"


def broker_entry(spec: NodeSpec, topo: Topology) -> dict[str, Any]:
    """One ``brokers`` item of the engine config for an ``mt5`` node."""
    return {
        "name": spec.role.removeprefix("broker-"),
        "factory": BROKER_FACTORY,
        "params": {"kind": "simulator", "host": spec.address, "port": spec.port,
                   "call_timeout": float(topo.settings["mt5.call_timeout_s"])},
        "login": int(topo.settings["mt5.account"]),
    }


ROLE = "engine"  # the engine's Redis/Sentinel user


def credentials_config(secrets: StackSecrets, role: str = ROLE) -> dict[str, str]:
    """The ``EngineConfig`` fields that log a client in as ``role``: user names and the password file."""
    user = secrets.redis(role).username
    password_file = str(secrets.password_file(role))
    return {"redis_username": user, "redis_password_file": password_file,
            "sentinel_username": user, "sentinel_password_file": password_file}


def clickhouse_config(topo: Topology, secrets: StackSecrets) -> dict[str, str]:
    """The ``EngineConfig`` fields that make the engines sync every final outcome to the topology's ClickHouse
    (CH-1): its HTTP URL, the stack's ClickHouse user and a 0600 file of its password in the stack's secrets (the
    config names the file); CH-3's backups off, as in the drills. Empty when the topology runs no ClickHouse."""
    from tradedrill.credentials import write_private

    nodes = topo.of_kind("clickhouse")
    if not nodes:
        return {}
    spec = nodes[0]
    cred = secrets.clickhouse()
    password_file = secrets.folder / "clickhouse-engine.password"
    write_private(password_file, cred.password + "\n")
    return {"clickhouse_url": f"http://{spec.address}:{spec.ports['http']}", "clickhouse_username": cred.username,
            "clickhouse_password_file": str(password_file), "clickhouse_backup_dir": "off"}


def engine_config(topo: Topology, overrides: dict | None = None, secrets: StackSecrets | None = None) -> dict:
    """The engine configuration (a JSON-able dict of ``EngineConfig`` fields) for ``topo``; with ``secrets`` and
    ClickHouse among the topology's services, the engines sync their outcomes to it (:func:`clickhouse_config`:
    ``tradedrill up --services redis,clickhouse,mt5,engine,...`` fills ClickHouse as the drills do)."""
    brokers = sorted(topo.of_kind("mt5"), key=lambda s: (s.role != "broker-primary", s.name))
    cfg: dict[str, Any] = {
        "group": str(topo.settings["engine.group"]),
        "sentinels": [[s.address, s.port] for s in topo.of_kind("sentinel")],
        "master_name": topo.master_name,
        "brokers": [broker_entry(s, topo) for s in brokers],
    }
    if secrets is not None:
        cfg.update(credentials_config(secrets))
        cfg.update(clickhouse_config(topo, secrets))
    cfg.update(overrides or {})
    return cfg


def build_node(spec: NodeSpec, topo: Topology, run_dir: Path, registry: PidRegistry | None, *,
               config_path: Path | str, command: Sequence[str] | None = None,
               env: dict | None = None, state_tmpfs_bytes: int = 0) -> ProcessNode:
    """The engine instance of ``spec`` (not started; a supervisor may start it). ``state_tmpfs_bytes``: see the
    module docstring (0: the state dir stays on the run folder's filesystem)."""
    instance = instance_of(spec)
    state = state_dir(spec, run_dir)
    events = events_path(spec, run_dir)
    argv = [*(command or DEFAULT_COMMAND), "run", "--config", str(config_path), "--instance", instance,
            "--state-dir", str(state),
            # its Redis and Sentinel connections leave from its own address: a partition can cut it alone
            "--set", f"redis_source_address={spec.address}"]
    extra = {"kind": spec.kind, "instance": instance, "state_dir": str(state), "config": str(config_path)}
    before_start = lambda: private_dir(state)  # noqa: E731
    if state_tmpfs_bytes:
        from faults.files import TmpfsMount

        mount = extra["state_tmpfs"] = TmpfsMount(state, int(state_tmpfs_bytes))

        def before_start() -> None:
            private_dir(state)
            mount.mount()   # once; a restart finds it mounted
    return ProcessNode(
        name=spec.name, role=spec.role, address=spec.address, port=spec.port, argv=argv,
        log_path=Path(run_dir) / "logs" / f"{spec.name}.log", cwd=REPO_ROOT, env=dict(env) if env else None,
        ready=events.exists, registry=registry, before_start=before_start, extra=extra,
    )


def unmount_state(node: ProcessNode) -> list[str]:
    """Undo the state dir tmpfs of an engine node built with ``state_tmpfs_bytes`` (call once its process is
    stopped): files copied back, unmounted. Returns teardown errors (empty when there was no mount)."""
    mount = node.extra.get("state_tmpfs")
    if mount is None:
        return []
    try:
        mount.unmount()
    except Exception as exc:  # noqa: BLE001 - teardown goes on; heal-all names what is left
        return [f"{node.name}: tmpfs over {mount.folder} not undone ({exc}); run `tradedrill faults heal-all`"]
    return []


__all__ = ["ENGINE_INSTANCES", "broker_entry", "build_node", "credentials_config", "engine_config", "events_path",
           "instance_of", "node_name", "state_dir", "unmount_state"]
