"""The Docker engine: use the one that answers, or start Debian's ``dockerd`` when none does and we are root, and
stop it at the end only if we started it.

Ryuk (testcontainers' reaper) is an image from a registry this machine cannot reach, so it is switched off
(``TESTCONTAINERS_RYUK_DISABLED=true``) and the provider removes its own containers and networks by label
(``tradedrill.docker.labels``). A dockerd we started is recorded in ``<state root>/docker/dockerd.json`` (PID and
start time): ``tradedrill down`` stops it by that PID, never by name, and never one somebody else started.

dockerd writes its NAT and forwarding rules as nftables tables of the host (``ip nat``, ``ip filter``: iptables-nft)
and leaves them when it stops, the FORWARD chain's policy ``drop`` included. A dockerd we start records the host's
tables first (``tables_before`` in its record); when we stop it, the tables dockerd makes (``DOCKERD_TABLES``) that
did not exist before are deleted, nothing else (another table made meanwhile, e.g. a drill's ``tradedrill_<pid>``,
stays). We call ``nft`` instead of a library: the only thing needed is to list and delete whole tables.

Every network dockerd makes by itself (its default bridge, the build containers of ``docker build``) is placed
in ``SUBNET_POOL``: this project keeps its container networks inside 172.30.0.0/16.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tradedrill.process import same_process_alive, signal_process, state_root, _create_time
from tradedrill.waiting import DeadlineExceeded, wait_until

SOCKET = "/var/run/docker.sock"
DEFAULT_BRIDGE = "172.30.0.1/24"        # dockerd's own bridge (docker0): the classic builder's containers
SUBNET_POOL = "172.30.128.0/17"         # networks docker allocates itself (ours name their subnet explicitly)
START_TIMEOUT_S = 60.0
# the tables dockerd (iptables-nft) makes on the host; only these are removed after a dockerd we started
DOCKERD_TABLES = frozenset(f"{family} {name}" for family in ("ip", "ip6")
                           for name in ("nat", "filter", "mangle", "raw"))
STOP_TIMEOUT_S = 30.0


class DockerUnavailable(RuntimeError):
    """No Docker engine answers and none can be started here; the message says what to do."""


def _configure_testcontainers() -> None:
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"   # no registry: Ryuk's image cannot be pulled


def client(timeout: float = 120.0):
    """A docker SDK client of the running engine (raises DockerUnavailable when none answers)."""
    import docker

    _configure_testcontainers()
    try:
        c = docker.DockerClient(base_url=f"unix://{SOCKET}", timeout=int(timeout))
        c.ping()
        return c
    except Exception as exc:  # noqa: BLE001 - docker raises several types for "not there"
        raise DockerUnavailable(f"no Docker engine answers on {SOCKET} ({type(exc).__name__}); start one with "
                                f"`dockerd &` as root, or run the drill as root so the harness starts it") from None


def answers() -> bool:
    try:
        client(timeout=5).close()
        return True
    except DockerUnavailable:
        return False


def _record_path() -> Path:
    folder = state_root() / "docker"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / "dockerd.json"


@dataclass
class DockerEngine:
    """The engine a run uses. ``started`` says whether this harness started it (then ``stop`` stops it)."""

    started: bool
    pid: int | None = None
    create_time: float | None = None
    log_path: Path | None = None
    proc: subprocess.Popen | None = None   # when this process started it (reaped here, never left a zombie)
    tables_before: frozenset[str] | None = None   # the host's nftables tables before it started (None: unknown)
    tables_removed: tuple[str, ...] = ()           # what stop() deleted ("ip nat", ...)

    @property
    def started_here(self) -> bool:
        """Whether this process started it (``ensure`` ran dockerd now): the command that did stops it at its end."""
        return self.started and self.proc is not None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the dockerd we started (SIGTERM, SIGKILL at the deadline); a no-op for one we did not start.
        Returns True when one was stopped."""
        if not self.started or self.pid is None:
            return False
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            stopped = True
        else:
            stopped = _stop_pid(self.pid, self.create_time, timeout)
        if self.tables_before is not None:
            self.tables_removed = tuple(remove_added_tables(self.tables_before))
        _record_path().unlink(missing_ok=True)
        return stopped


def _nft(*args: str) -> subprocess.CompletedProcess:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    return subprocess.run([nft, *args], capture_output=True, text=True, timeout=30)


def host_tables() -> frozenset[str] | None:
    """The host's nftables tables as ``"<family> <name>"`` (e.g. ``"ip nat"``); None when ``nft`` is missing or
    refuses (then nothing is removed later)."""
    try:
        proc = _nft("list", "tables")
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return frozenset(" ".join(line.split()[1:3]) for line in proc.stdout.splitlines()
                     if line.startswith("table ") and len(line.split()) >= 3)


def remove_added_tables(before: frozenset[str] | set[str]) -> list[str]:
    """Delete the tables of ``DOCKERD_TABLES`` that exist now and not in ``before`` (what a dockerd we started
    added). Returns the tables deleted (``["ip nat", "ip filter"]``); one that ``nft`` refuses to delete stays and
    is not listed."""
    now = host_tables()
    if now is None:
        return []
    removed = []
    for table in sorted((now - set(before)) & DOCKERD_TABLES):
        if _nft("delete", "table", *table.split()).returncode == 0:
            removed.append(table)
    return removed


def _stop_pid(pid: int, create_time: float | None, timeout: float) -> bool:
    if not same_process_alive(pid, create_time):
        return False
    signal_process(pid, create_time, signal.SIGTERM)
    try:
        wait_until(lambda: not same_process_alive(pid, create_time), timeout, f"dockerd (pid {pid}) to exit")
    except DeadlineExceeded:
        signal_process(pid, create_time, signal.SIGKILL)
        wait_until(lambda: not same_process_alive(pid, create_time), 10.0, f"dockerd (pid {pid}) to die")
    return True


def recorded() -> DockerEngine | None:
    """The dockerd an earlier harness process started and recorded, if it still runs."""
    path = _record_path()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not same_process_alive(int(doc["pid"]), doc.get("create_time")):
        path.unlink(missing_ok=True)
        return None
    before = doc.get("tables_before")
    return DockerEngine(True, int(doc["pid"]), doc.get("create_time"), Path(doc.get("log", "")) or None,
                        tables_before=frozenset(before) if isinstance(before, list) else None)


def ensure(start: bool = True, timeout: float = START_TIMEOUT_S) -> DockerEngine:
    """The engine to use: the one that answers (started by us earlier if recorded, else someone else's), or a
    dockerd started now when ``start`` and we are root. Raises DockerUnavailable with what to do."""
    _configure_testcontainers()
    if answers():
        return recorded() or DockerEngine(started=False)
    if not start:
        raise DockerUnavailable(f"no Docker engine answers on {SOCKET}; start one (`dockerd &` as root)")
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not os.path.exists(dockerd):
        raise DockerUnavailable("dockerd is not installed; install Debian's docker.io (bash run.sh setup does)")
    if os.geteuid() != 0:
        raise DockerUnavailable(f"no Docker engine answers on {SOCKET} and only root can start one; start dockerd "
                                f"as root, or give this user access to a running one")
    log_path = state_root() / "docker" / "dockerd.log"
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tables_before = host_tables()
    log = open(log_path, "ab")
    argv = [dockerd, "--host", f"unix://{SOCKET}", "--bip", DEFAULT_BRIDGE,
            "--default-address-pool", f"base={SUBNET_POOL},size=24"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    engine = DockerEngine(True, proc.pid, _create_time(proc.pid), log_path, proc, tables_before=tables_before)
    _record_path().write_text(json.dumps({"pid": proc.pid, "create_time": engine.create_time, "log": str(log_path),
                                          "started_at": time.time(),
                                          "tables_before": None if tables_before is None else sorted(tables_before)}))

    def up() -> bool:
        if proc.poll() is not None:
            raise DockerUnavailable(f"dockerd exited with status {proc.returncode}; its log is {log_path}")
        return answers()

    try:
        wait_until(up, timeout, f"dockerd (pid {proc.pid}) to answer on {SOCKET}", interval=0.1, max_interval=0.5)
    except DeadlineExceeded as exc:
        if isinstance(exc.__cause__, DockerUnavailable):
            raise exc.__cause__ from None
        engine.stop()
        raise DockerUnavailable(f"{exc}; its log is {log_path}") from None
    return engine


def stop_recorded(timeout: float = STOP_TIMEOUT_S) -> bool:
    """``tradedrill down``: stop the dockerd a harness process started and recorded (never another)."""
    engine = recorded()
    return engine.stop(timeout) if engine else False
