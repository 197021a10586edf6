"""The docker provider: the same declarative topology as the local provider, every node a container (one host per
node) on a user-defined Docker network, each with its own address and DNS name.

    stack = DockerStack(DockerStack.drill_topology("172.30.17", ("redis", "mt5", "engine")), run_dir)
    with stack:   # dockerd started if none answers (root), images built if their inputs changed
        stack.node("engine-a").kill()          # docker kill
        stack.node("redis-1").pause()          # the cgroup freezer

It is ``LocalStack`` with other node handles: the service modules render the same configs into the same run folder
(mounted into every container at the same path), the start order, the Sentinels' agreement, the engines' lease
handover, the supervisors and every client are the local provider's code, reaching the containers' addresses from
the host across the bridge. What differs is the place of each node (``tradedrill.docker.nodes.ContainerNode``),
the engine (``tradedrill.docker.engine``), the images (``tradedrill.docker.images``) and the cleanup: everything a
run creates carries its label and is removed by it at ``down``; a run killed with SIGKILL is swept at the next
``up`` or by ``tradedrill down`` (``tradedrill.docker.labels``).
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Callable, Iterable

from tradedrill.local import LocalStack, StackError
from tradedrill.process import PidRegistry
from tradedrill.topology import NodeSpec, Topology, TopologyError

DEFAULT_SUBNET = "172.30.17"
DRILL_DEFAULT_SUBNET = "127.0.0"   # the drills' --subnet default: no subnet given
KINDS = ("redis", "sentinel", "mt5", "engine", "ea", "backend", "clickhouse", "postgres")
# The drill's own clients that leave from an address of their own (scenarios: tick consumers .150-.159, the tick
# fault proxy .160, the load's tick consumers .170, the set writers .200-.249, the webhook clients .251). Locally
# they are loopback addresses; here they are addresses of the host on the run's bridge (``ip addr add``), so a
# partition can put a harness client on either side and the containers reach the host's proxy and consumers.
HOST_CLIENT_HOSTS = (*range(150, 161), 170, *range(200, 250), 251)
BRIDGE_PREFIX = "td-"   # the run's bridge device: td-<run id> (15 characters at most)


class _RunRegistry(PidRegistry):
    """The run's PID registry; its ``kill_all`` (a drill's teardown escalation) also removes the run's
    containers by label."""

    def __init__(self, path: Path, stack: "DockerStack"):
        super().__init__(path)
        self._stack = stack

    def kill_all(self) -> list[str]:
        killed = super().kill_all()
        if self._stack.client is not None:
            from tradedrill.docker import labels

            killed += labels.sweep(self._stack.client, run_id=self._stack.run_id, orphans_only=False).containers
        return killed


class DockerStack(LocalStack):
    provider = "docker"
    # no tmpfs of the engine's own to fill (a mount made on the host after the container started does not reach
    # it); the fault proxy is the drill's own (the tick proxy on a host address of the run's bridge)
    capabilities = frozenset({"process", "pause", "kernel-net", "node-files", "broker-admin", "fault-proxy",
                              "node-disconnect"})

    def __init__(self, topology: Topology, run_dir: Path | str, options: dict[str, dict] | None = None,
                 services: Iterable[str] | None = None, before_engines: Callable[["LocalStack"], None] | None = None,
                 stop_engine: bool | None = None):
        super().__init__(topology, run_dir, options=options, services=services, before_engines=before_engines)
        self.run_id = hashlib.sha256(f"{self.run_dir}:{os.getpid()}:{time.time()}".encode()).hexdigest()[:10]
        self.registry = _RunRegistry(self.run_dir / "pids.json", self)
        self.client = None
        self.engine = None          # tradedrill.docker.engine.DockerEngine
        self.network = None
        self.images: dict[str, str] = {}
        self.image_records: list = []
        self.host_addresses: list[str] = []   # the harness's client addresses on the run's bridge
        self._host_rules = False               # a kernel fault placed rules in the harness's own namespace
        # stop a dockerd we started at down (default); tests that run several stacks keep it
        self.stop_engine = (os.environ.get("TRADEDRILL_DOCKER_KEEP_ENGINE") != "1") if stop_engine is None \
            else stop_engine

    @staticmethod
    def drill_topology(subnet: str, services: Iterable[str], overrides: dict | None = None) -> Topology:
        """The documents' topology on a Docker network. The drills' default subnet (``127.0.0``: no --subnet
        given) becomes DEFAULT_SUBNET (or $TRADEDRILL_DOCKER_SUBNET); any other loopback subnet is refused in one
        line (it was silently replaced by 172.30.17, issue 17), as is anything outside 172.30.0.0/16."""
        if subnet == DRILL_DEFAULT_SUBNET:
            subnet = os.environ.get("TRADEDRILL_DOCKER_SUBNET", DEFAULT_SUBNET)
        elif isinstance(subnet, str) and subnet.startswith("127."):
            raise TopologyError(f"subnet {subnet[:40]!r} is loopback: docker subnets are /24s in 172.30.0.0/16 "
                                f"(other than 172.30.0), e.g. --subnet {DEFAULT_SUBNET}")
        return Topology.default(subnet=subnet, services=services, overrides=overrides, network="docker")

    @property
    def gateway(self) -> str:
        """The host's own address on the run's network: where the harness's clients leave from when they bind
        no address of their own (the local provider's 127.0.0.1)."""
        return f"{self.topology.subnet}.1"

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.run_id}"

    def provider_details(self) -> dict:
        return {"run_id": self.run_id, "network": getattr(self.network, "name", None),
                "subnet": f"{self.topology.subnet}.0/24", "images": dict(self.images), "bridge": self.bridge,
                "harness_address": self.gateway, "harness_client_addresses": len(self.host_addresses),
                "image_builds": [{"image": r.name, "tag": r.tag, "built": r.built, "seconds": round(r.seconds, 2),
                                  "size_mb": round(r.size_mb, 1)} for r in self.image_records],
                "engine_started_by_harness": bool(self.engine and self.engine.started)}

    # -- lifecycle -------------------------------------------------------------------------------------------
    def place_fault(self, fault):
        """Kernel rules go into every container's own network namespace and into the harness's (each filters its
        input, as the host's one namespace does for the local provider's loopback addresses; the harness's own
        clients and the drill's tick consumers are host addresses on the run's bridge). The harness's unbound
        clients leave from the bridge's gateway, not 127.0.0.1: a partition that places "the harness" on a side
        places the gateway there."""
        from faults.kernel import NftFault, Partition
        from faults.partition import CLIENT_SOURCE

        if isinstance(fault, Partition):
            fault.groups = [list(dict.fromkeys(self.gateway if a == CLIENT_SOURCE else a for a in g))
                            for g in fault.groups]
        if isinstance(fault, NftFault):
            def pids() -> list[int]:
                self._host_rules = True
                return [os.getpid(), *(n.pid for n in self.nodes.values() if n.pid)]

            fault.netns_pids = pids
        return fault

    def _check_ports(self, listening: list[NodeSpec], reaped: bool) -> None:
        """Every node is its own host: nothing on this machine's addresses to check."""

    def up(self) -> "DockerStack":
        from tradedrill.docker import engine, images, labels

        unsupported = sorted({s.kind for s in self._specs()} - set(KINDS))
        if unsupported:
            raise StackError(f"the docker provider does not run {', '.join(unsupported)} nodes yet; run those "
                             f"services with the local provider")
        started = time.monotonic()
        try:
            self.engine = engine.ensure()
            self.client = engine.client(timeout=1800)
        except engine.DockerUnavailable as exc:
            raise StackError(str(exc)) from None
        try:
            swept = labels.sweep(self.client)   # what a killed earlier run left
            if swept:
                print(f"tradedrill: removed {swept.describe()} left by an earlier docker run")
            log_dir = self.run_dir / "logs"
            tags: dict[str, str] = {}   # one tag per recipe in one up (the source may change meanwhile)
            for kind in sorted({s.kind for s in self._specs()}):
                recipe = images.IMAGE_OF_KIND[kind]
                if recipe.name not in tags:
                    tags[recipe.name] = images.ensure(self.client, recipe, log_dir, records=self.image_records)
                self.images[kind] = tags[recipe.name]
            self.timings["images_s"] = time.monotonic() - started
            self.network = self._make_network()
            self._add_host_addresses()
            # the faults' safety check admits this run's own network (faults.safety)
            from faults.safety import NETWORKS_ENV

            nets = [n for n in os.environ.get(NETWORKS_ENV, "").split(",") if n]
            os.environ[NETWORKS_ENV] = ",".join(dict.fromkeys([*nets, f"{self.topology.subnet}.0/24"]))
        except BaseException:
            self._remove_docker_objects()
            raise
        try:
            return super().up()
        finally:
            self.timings["docker_up_s"] = time.monotonic() - started

    def _make_network(self):
        from docker.types import IPAMConfig, IPAMPool
        from testcontainers.core.network import Network

        from tradedrill.docker import labels

        subnet = f"{self.topology.subnet}.0/24"
        for net in self.client.networks.list(filters={"label": f"{labels.PROVIDER}=docker"}):
            configs = (net.attrs.get("IPAM") or {}).get("Config") or []
            if any(c.get("Subnet") == subnet for c in configs):
                run_dir = (net.attrs.get("Labels") or {}).get(labels.RUN_DIR, "?")
                raise StackError(f"subnet {subnet} is used by the docker network {net.name} of a live run "
                                 f"({run_dir}); choose another --subnet in 172.30.0.0/16 or stop that run "
                                 f"(`tradedrill down --all`)")
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=subnet, gateway=self.gateway)])
        network = Network(docker_network_kw={"ipam": ipam, "driver": "bridge", "labels": self._labels(),
                                             "options": {"com.docker.network.bridge.name": self.bridge}})
        network.name = f"tradedrill-{self.run_id}"
        try:
            return network.create()
        except Exception as exc:  # noqa: BLE001 - e.g. a pool that overlaps a network someone else made
            raise StackError(f"cannot create the docker network {network.name} on {subnet}: {exc}; choose "
                             f"another --subnet in 172.30.0.0/16") from None

    def _add_host_addresses(self) -> None:
        """The harness's client addresses (``HOST_CLIENT_HOSTS`` not used by a node) on the run's bridge, /32 each:
        they go with the bridge when the network is removed. Raises StackError when ``ip`` refuses."""
        import subprocess

        used = {n.address for n in self.topology.nodes}
        wanted = [a for a in (f"{self.topology.subnet}.{h}" for h in HOST_CLIENT_HOSTS) if a not in used]
        script = "".join(f"address add {a}/32 dev {self.bridge}\n" for a in wanted)
        proc = subprocess.run(["ip", "-batch", "-"], input=script, text=True, capture_output=True, timeout=30)
        if proc.returncode != 0:
            raise StackError(f"cannot give the harness its client addresses on {self.bridge} "
                             f"({proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else proc.returncode}); "
                             f"the docker provider runs as root")
        self.host_addresses = wanted

    def _labels(self) -> dict[str, str]:
        from tradedrill.docker import labels

        return labels.run_labels(self.run_id, str(self.run_dir))

    def _build(self, spec: NodeSpec):
        from tradedrill.docker.nodes import ContainerNode

        inner = super()._build(spec)   # never started itself: its command, config writer and probe are reused
        return ContainerNode(inner, kind=spec.kind, image=self.images[spec.kind], network=self.network,
                             run_dir=self.run_dir, labels=self._labels(),
                             container_name=f"tradedrill-{self.run_id}-{spec.name}",
                             mounts=tuple(outside_folders(self.options.get(spec.kind, {}), self.run_dir)))

    def down(self) -> list[str]:
        errors = super().down()
        errors += self._remove_docker_objects()
        return errors

    def _remove_docker_objects(self) -> list[str]:
        from tradedrill.docker import labels

        errors: list[str] = []
        if self._host_rules:
            # the harness's own table (its chains went at each heal); another live kernel fault keeps it
            from faults import kernel

            if not kernel._live_chains:
                kernel.delete_table(kernel.table_name())
            self._host_rules = False
        if self.client is not None:
            swept = labels.sweep(self.client, run_id=self.run_id, orphans_only=False)
            errors += [f"docker: {e}" for e in swept.errors]
        if self.engine is not None and self.engine.started and self.stop_engine:
            try:
                if self.client is None or not labels.sweep_needed(self.client):
                    self.engine.stop()
            except Exception as exc:  # noqa: BLE001 - teardown goes on
                errors.append(f"dockerd: {exc}")
        if self.client is not None:
            self.client.close()
            self.client = None
        return errors


def outside_folders(options: dict, run_dir: Path) -> list[str]:
    """The folders of the files a kind's options name outside the run folder (e.g. the private /tmp folder of a
    drill's sealed broker logins: the simulators' account file, the engines' key file): a container sees only what
    is mounted, so each is mounted at its own path. Only existing absolute paths under /tmp count (the repository is
    in the image, system paths are the image's own)."""
    found: list[str] = []

    def walk(value) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, (str, Path)) and str(value).startswith("/tmp/"):
            path = Path(value)
            folder = path if path.is_dir() else path.parent
            if folder.is_dir() and folder != Path("/tmp") and not folder.resolve().is_relative_to(
                    Path(run_dir).resolve()):
                found.append(str(folder.resolve()))

    walk(options)
    return sorted(set(found))


def down_leftovers(every: bool = False) -> list[str]:
    """``tradedrill down``: remove what docker runs whose harness process is gone left (every run's with
    ``every``), then stop the dockerd a harness started once nothing of ours runs on it. Lines to print."""
    from tradedrill.docker import engine, labels

    if not os.path.exists(engine.SOCKET):
        return []
    try:
        import docker  # noqa: F401 - the SDK is the docker extra; without it nothing of a docker run can be swept
    except ImportError:
        return ["docker: containers of docker-provider runs were not looked for: the docker SDK is not installed "
                "(bash run.sh setup installs it)"]
    if not engine.answers():
        return []
    lines = []
    client = engine.client()
    try:
        swept = labels.sweep(client, orphans_only=not every)
        if swept:
            lines.append(f"removed {swept.describe()} of docker runs: {', '.join(swept.containers + swept.networks)}")
        lines += [f"docker: {e}" for e in swept.errors]
        keep = os.environ.get("TRADEDRILL_DOCKER_KEEP_ENGINE") == "1"
        started = None if keep or labels.sweep_needed(client) else engine.recorded()
        if started is not None and started.stop():
            lines.append("stopped the dockerd a tradedrill run had started" +
                         (f" and removed the nftables tables it had added ({', '.join(started.tables_removed)})"
                          if started.tables_removed else ""))
    finally:
        client.close()
    return lines
