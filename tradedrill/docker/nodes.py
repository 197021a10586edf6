"""A node of the topology as a container (testcontainers' ``DockerContainer``), with the node handle interface of
``tradedrill.providers.base.NodeHandle``.

The service module builds the node as it does for the local provider (``tradedrill/services/<service>.py``): its
command line, configuration writer, readiness probe and log file. ``ContainerNode`` runs that command in the image
of the node's kind, on the run's network at the node's own address with its name as DNS alias, with the run folder
mounted at the same path (so every config, data dir, journal and log the service module names is where it says, for
the harness and the node alike). The command's output goes to the node's log file in the run folder, as locally.
A node its service module runs as an account (PostgreSQL, which refuses root) runs as that host account's uid/gid
(``setpriv``); a folder it uses outside the run folder (a relocated cluster, a private /tmp folder its options
name) is mounted at its path; PostgreSQL and ClickHouse also admit clients from the run's /24
(``open_to_network``), since here no client is on loopback.

Faults: ``kill`` is ``docker kill`` (SIGKILL to the container's init: everything in it dies), ``terminate`` is
``docker stop`` (SIGTERM, SIGKILL after the deadline), ``pause``/``resume`` are the cgroup freezer (``docker
pause``/``unpause``), ``start`` starts the same container again (same address). ``pid`` is the host PID of the
container's init (docker-init), the process the kernel rules of ``tradedrill.docker.netfaults`` enter.
"""
from __future__ import annotations

import pwd
import sys
import threading
from pathlib import Path
from typing import Any

from tradedrill.docker import images
from tradedrill.process import NodeStartError, ProcessNode, same_process_alive, _create_time
from tradedrill.waiting import DeadlineExceeded, wait_until

HOST_REPO = str(images.REPO_ROOT)


def container_argv(argv: list[str], kind: str = "", python: str = images.APP_PYTHON) -> list[str]:
    """A local node's command line as the container runs it: the harness's Python becomes the image's, and the
    MT5 simulator may listen on its container address (a network of this machine's own, not loopback)."""
    head = argv[0]
    if head == sys.executable or Path(head).name.startswith("python"):
        head = python
    out = [head, *argv[1:]]
    if kind == "mt5" and "serve" in out and "--allow-remote" not in out:
        out.insert(out.index("serve") + 1, "--allow-remote")
    return out


class ContainerNode:
    """One node in one container; wraps the ``ProcessNode`` its service module built (see the module docstring)."""

    def __init__(self, inner: ProcessNode, *, kind: str, image: str, network: Any, run_dir: Path,
                 labels: dict[str, str], container_name: str, mounts: tuple[str, ...] = ()):
        self.inner = inner
        self.name, self.role, self.address, self.port = inner.name, inner.role, inner.address, inner.port
        self.log_path = inner.log_path
        self.extra = {**inner.extra, "kind": kind, "image": image, "container": container_name}
        self.kind, self.image, self.network, self.run_dir = kind, image, network, Path(run_dir)
        self.labels, self.container_name = labels, container_name
        self.mounts = tuple(mounts)   # host folders outside the run folder the node reads, mounted at their path
        self.ready_timeout = inner.ready_timeout
        self.paused = False
        self.starts = 0
        self._container = None      # testcontainers DockerContainer, created on the first start
        self._pid: int | None = None
        self._create_time: float | None = None
        self._lifecycle = threading.RLock()

    # -- the container ----------------------------------------------------------------------------------------
    def _spec(self):
        from docker.types import EndpointConfig, Mount
        from testcontainers.core.container import DockerContainer

        argv = container_argv(list(self.inner.argv), self.kind)
        log = str(self.log_path)
        env = {"TD_LOG": log, **(self.inner.env or {})}
        account = getattr(self.inner, "user", None)
        if account:
            # a server that refuses root (PostgreSQL) runs as the host account that owns its files (the same
            # numeric uid/gid: the run folder is the host's), with a passwd entry for that uid if the image has
            # none; the log is opened by root's shell before setpriv drops to the account
            entry = pwd.getpwnam(account)
            env.update({"TD_UID": str(entry.pw_uid), "TD_GID": str(entry.pw_gid), "TD_ACCOUNT": account})
            script = ('getent passwd "$TD_UID" >/dev/null || echo "td-$TD_ACCOUNT:x:$TD_UID:$TD_GID::/nonexistent:'
                      '/usr/sbin/nologin" >>/etc/passwd; exec setpriv --reuid="$TD_UID" --regid="$TD_GID" '
                      '--clear-groups -- "$@" >>"$TD_LOG" 2>&1')
        else:
            script = 'exec "$@" >>"$TD_LOG" 2>&1'
        # the command's output appended to the node's log in the run folder (exec: the command is init's child)
        command = ["/bin/sh", "-c", script, "sh", *argv]
        cwd = str(self.inner.cwd) if self.inner.cwd else None
        if cwd == HOST_REPO:
            cwd = images.APP_SOURCE
        c = DockerContainer(self.image)
        c.with_name(self.container_name).with_command(command).with_network(self.network)
        for k, v in env.items():
            c.with_env(k, v)
        c.with_volume_mapping(str(self.run_dir), str(self.run_dir), "rw")
        for folder in self._outside_mounts():
            c.with_volume_mapping(folder, folder, "rw")
        extra = []   # docker.types.Mount: testcontainers keeps one volume mapping per host path
        if cwd == images.APP_SOURCE:
            # the harness names some files by paths relative to its own directory (a passfile in a DSN); locally
            # the node runs there, here in the image's source folder: the run folder appears at that relative path
            # there too
            try:
                rel = self.run_dir.resolve().relative_to(Path.cwd().resolve())
            except ValueError:
                rel = None
            if rel is not None and rel.parts and rel.parts[0] not in ("..", "reference", "tradedrill", "scenarios",
                                                                       "faults"):
                extra.append(Mount(f"{images.APP_SOURCE}/{rel}", str(self.run_dir.resolve()), type="bind"))
        c.with_kwargs(
            labels={**self.labels, "io.tradedrill.node": self.name},
            hostname=self.name, init=True, working_dir=cwd,
            networking_config={self.network.name: EndpointConfig("1.41", aliases=[self.name],
                                                                 ipv4_address=self.address)},
            # the kernel fault rules are entered from the host (nsenter); nothing in the node needs privileges
            cap_add=[], security_opt=[], mounts=extra,
        )
        return c

    def _outside_mounts(self) -> list[str]:
        """Folders the node uses outside the run folder, mounted at the same path: a PostgreSQL cluster that the
        service module put under /tmp because its account cannot pass through the run folder's parents."""
        out = list(self.mounts)
        for key in ("pgdata",):
            folder = self.inner.extra.get(key)
            if folder and not Path(folder).resolve().is_relative_to(self.run_dir.resolve()):
                out.append(str(Path(folder).resolve()))
        return out

    def open_to_network(self) -> None:
        """The service modules admit clients from loopback only (the local provider's nodes all live there); in
        a container the clients come from the run's network (the harness at the bridge's gateway, the engines and
        backends in their containers): PostgreSQL's pg_hba.conf and ClickHouse's users.xml also admit the run's
        /24, with the same password (SCRAM / SHA-256), nothing else."""
        subnet = f"{self.address.rsplit('.', 1)[0]}.0/24"
        if self.kind == "postgres" and self.inner.extra.get("pgdata"):
            hba = Path(self.inner.extra["pgdata"]) / "pg_hba.conf"
            line = f"host    all   all   {subnet}   scram-sha-256\n"
            text = hba.read_text()
            if line not in text:
                hba.write_text(text + "# the run's docker network (tradedrill.docker.nodes)\n" + line)
        elif self.kind == "clickhouse":
            users = Path(self.inner.cwd or ".") / "users.xml"   # the service module's data folder
            text = users.read_text() if users.exists() else ""
            mine = f"<ip>{subnet}</ip>"
            if text and mine not in text:
                users.write_text(text.replace("<networks>", f"<networks>{mine}", 1))

    @property
    def container(self):
        """The docker SDK container (None before the first start)."""
        return self._container.get_wrapped_container() if self._container is not None else None

    def _refresh_pid(self) -> None:
        self.container.reload()
        self._pid = int(self.container.attrs["State"].get("Pid") or 0) or None
        self._create_time = _create_time(self._pid) if self._pid else None

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> "ContainerNode":
        with self._lifecycle:
            if self.is_alive():
                return self
            if self.inner.before_start:
                self.inner.before_start()
            self.open_to_network()
            self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                log.write(f"\n=== tradedrill: starting {self.name} in container {self.container_name} "
                          f"({self.image}) at {self.address}\n".encode())
            try:
                if self._container is None:
                    self._container = self._spec().start()
                else:
                    self.container.start()
            except Exception as exc:  # noqa: BLE001 - the daemon's error, in one sentence
                raise NodeStartError(f"{self.name}: the container {self.container_name} did not start: {exc}") \
                    from None
            self._refresh_pid()
            self.paused = False
            self.starts += 1
            return self

    def wait_ready(self, timeout: float | None = None) -> "ContainerNode":
        timeout = self.ready_timeout if timeout is None else timeout

        def probe() -> bool:
            if not self.is_alive():
                raise NodeStartError(f"{self.name} (container {self.container_name}) exited with status "
                                     f"{self.returncode} before it was ready; its log is {self.log_path}:\n"
                                     f"{self.log_tail()}")
            return bool(self.inner.ready())

        try:
            wait_until(probe, timeout, f"{self.name} at {self.address}:{self.port} (container) to be ready")
        except DeadlineExceeded as exc:
            if isinstance(exc.__cause__, NodeStartError):
                raise exc.__cause__ from None
            raise NodeStartError(f"{exc}; its log is {self.log_path}:\n{self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def logs(self) -> str:
        """The node's log file (what its command wrote; the container's own stdout is redirected there)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int | None:
        return self._pid if self.is_alive() else None

    @property
    def create_time(self) -> float | None:
        return self._create_time

    @property
    def returncode(self) -> int | None:
        if self._container is None or self.is_alive():
            return None
        try:
            self.container.reload()
            return int(self.container.attrs["State"].get("ExitCode", 0))
        except Exception:  # noqa: BLE001 - removed underneath us: it is gone
            return -9

    def is_alive(self) -> bool:
        # the init's host PID with its start time: no API call per poll (supervisors poll often)
        return self._pid is not None and same_process_alive(self._pid, self._create_time)

    def _wait_exit(self, timeout: float) -> None:
        wait_until(lambda: not self.is_alive(), timeout, f"container {self.container_name} to exit")

    # -- faults -------------------------------------------------------------------------------------------------
    def kill(self, timeout: float = 10.0) -> None:
        """``docker kill``: SIGKILL to the container's init, so every process in it dies."""
        with self._lifecycle:
            if self._container is None or not self.is_alive():
                return
            try:
                self.container.kill()
            except Exception:  # noqa: BLE001 - it exited on its own meanwhile
                pass
            self._wait_exit(timeout)
            self.paused = False

    def terminate(self, timeout: float = 10.0) -> None:
        """``docker stop``: SIGTERM, SIGKILL after ``timeout``."""
        with self._lifecycle:
            if self._container is None or not self.is_alive():
                return
            if self.paused:
                self.resume()
            self.container.stop(timeout=int(max(1, timeout)))
            self._wait_exit(timeout + 5)

    def pause(self) -> None:
        """The cgroup freezer (``docker pause``): the node looks alive and does nothing."""
        if self._container is not None and self.is_alive():
            self.container.pause()
            self.paused = True

    def resume(self) -> None:
        if self._container is not None and self.paused:
            try:
                self.container.unpause()
            except Exception:  # noqa: BLE001 - already running (or gone)
                pass
            self.paused = False

    def _sdk_network(self):
        return self.container.client.networks.get(self.network.name)

    def connected(self) -> bool:
        """Whether the container is attached to the run's network (False while ``disconnect`` holds)."""
        if self._container is None:
            return False
        self.container.reload()
        return self.network.name in (self.container.attrs["NetworkSettings"].get("Networks") or {})

    def disconnect(self) -> None:
        """``docker network disconnect``: the node cut off entirely (its interface on the run's network removed;
        it keeps running, with only its loopback). Raises the docker SDK's APIError when the engine refuses."""
        with self._lifecycle:
            if self._container is not None and self.connected():
                self._sdk_network().disconnect(self.container, force=True)

    def reconnect(self) -> None:
        """``docker network connect`` back at the node's own address with its DNS alias (undoes ``disconnect``;
        a no-op when attached)."""
        with self._lifecycle:
            if self._container is not None and not self.connected():
                self._sdk_network().connect(self.container, ipv4_address=self.address, aliases=[self.name])

    def restart(self, ready: bool = True) -> "ContainerNode":
        self.terminate()
        self.start()
        return self.wait_ready() if ready else self

    def stop(self) -> None:
        """Stop for good (teardown); the container itself is removed by the run's label sweep."""
        if self._container is None:
            return
        self.resume()
        try:
            self.terminate(timeout=5.0)
        except Exception:  # noqa: BLE001 - then it is killed
            self.kill()

    def signal(self, sig: int) -> None:
        if self._container is not None and self.is_alive():
            self.container.kill(signal=int(sig))

    def describe(self) -> dict:
        return {"name": self.name, "role": self.role, "address": self.address, "port": self.port, "pid": self.pid,
                "alive": self.is_alive(), "paused": self.paused, "log": str(self.log_path),
                "container": self.container_name, "image": self.image}
