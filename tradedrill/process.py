"""One node of a topology: one OS process group that we started, with a handle to hurt and heal it.

Every node runs in a session of its own (``start_new_session``), so its process id is also its process group id
and signals reach the node's children too (PostgreSQL backends, Redis fork for BGSAVE). Nothing is ever found or
killed by name: the handle keeps the PID and the process start time, and a PID whose start time differs is not ours.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import psutil

from tradedrill.waiting import DeadlineExceeded, wait_until


# what a node inherits of the caller's environment (everything else it needs is in its ``env``)
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def node_environment(user: str | None = None) -> dict[str, str]:
    """The environment a node starts with: ``PATH``, ``LANG``, ``LC_ALL`` and ``TZ`` of the caller (when set), and
    ``HOME``, ``USER``, ``LOGNAME`` of the account the node runs as (``user``, else the caller's)."""
    env = {k: os.environ[k] for k in INHERITED_ENV if os.environ.get(k)}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    try:
        account = pwd.getpwnam(user) if user else pwd.getpwuid(os.geteuid())
        env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
    except KeyError:
        if os.environ.get("HOME") and not user:
            env["HOME"] = os.environ["HOME"]
    return env


def _groups_of(user: str | None) -> tuple[int | None, list[int] | None]:
    """(group, supplementary groups) for a node run as ``user``: the user's primary group and none else; (None,
    None) when the node runs as the caller."""
    if not user:
        return None, None
    try:
        return pwd.getpwnam(user).pw_gid, []
    except KeyError:
        raise NodeStartError(f"there is no Unix user {user!r} to run the node as") from None


class NodeStartError(RuntimeError):
    """A node failed to start or to become ready; the message says what to look at."""


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def same_process_alive(pid: int, create_time: float | None) -> bool:
    """True while ``pid`` is alive and is still the process started at ``create_time`` (not a recycled PID)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def kill_group(pid: int, create_time: float | None, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to the process group led by ``pid`` if it is still the process we started."""
    if not same_process_alive(pid, create_time):
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(pid, sig)
    return True


def signal_process(pid: int, create_time: float | None, sig: int) -> bool:
    """Send ``sig`` to the one process ``pid`` (not its group) if it is still the process started at
    ``create_time``."""
    if not same_process_alive(pid, create_time):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def signal_children(sig: int) -> int:
    """Send ``sig`` to every direct child of this process (the runs nox starts, pytest-xdist's workers), each of
    which handles it itself; returns how many were signalled (one gone meanwhile is skipped)."""
    sent = 0
    for child in psutil.Process().children():
        try:
            child.send_signal(sig)
            sent += 1
        except psutil.Error:
            continue
    return sent


def group_members(pgid: int) -> list[int]:
    """PIDs of the live processes whose process group is ``pgid``."""
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def state_root() -> Path:
    """The folder of this user's harness state (``$TRADEDRILL_STATE_DIR``, default ``/tmp/tradedrill-<uid>``),
    created 0700: the index of running stacks lives there."""
    root = Path(os.environ.get("TRADEDRILL_STATE_DIR") or f"/tmp/tradedrill-{os.getuid()}")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root


class SubnetBusy(RuntimeError):
    """Another live harness process holds the subnet; the message names it and what to do."""


class LockUnavailable(RuntimeError):
    """``flocked`` could not take its lock file: another user's, or held past ``wait_s``; the message names it."""


@contextlib.contextmanager
def flocked(path: Path, lock, folder_mode: int = 0o777, wait_s: float | None = None):
    """``lock`` (this process's threads) and an exclusive flock on ``<path>.lock`` (other processes) for one
    read-modify-write of ``path``; the folder is made first (``folder_mode``, before the umask). ``wait_s``: a lock
    file another user owns (it could hold the flock forever) is refused at once, and a holder that keeps it longer
    than ``wait_s`` seconds is named (LockUnavailable); None waits as long as it takes."""
    with lock:
        path.parent.mkdir(mode=folder_mode, parents=True, exist_ok=True)
        lock_path = path.with_name(path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if wait_s is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                owner = os.fstat(fd).st_uid
                if owner != os.geteuid():
                    raise LockUnavailable(f"{lock_path} belongs to uid {owner}, not to you")
                deadline = time.monotonic() + wait_s
                while True:   # bounded in time
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise LockUnavailable(f"{lock_path} stayed locked by another process for {wait_s:.0f} "
                                                  f"s; find it with: fuser {lock_path}") from None
                        time.sleep(0.01)
            yield
        finally:
            os.close(fd)   # releases the flock


class StackIndex:
    """Every stack this user's harness processes started: ``{registry path: {"subnet", "run_dir", "owner":
    {"pid", "create_time"}, "wall_ts", "detached"}}`` in ``state_root()/stacks.json``. Whatever starts a stack
    (``up``, a drill, a test) claims it here before starting a process, so a later ``drill``, ``up`` or ``down``
    finds what a crashed or SIGKILLed run left, wherever its run folder is, and stops it by PID and start time.

    Every harness process of the user rewrites the file: each read-modify-write holds this process's lock and an
    flock on ``stacks.json.lock`` beside it, and the new file replaces the old one atomically (without the flock,
    concurrent writers brought removed entries back and lost added ones)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else state_root() / "stacks.json"
        self._lock = threading.RLock()

    def _exclusive(self):
        """This process's lock and an flock on ``<file>.lock`` (a read-modify-write across processes)."""
        return flocked(self.path, self._lock, folder_mode=0o700)

    def _read(self) -> dict[str, dict]:
        try:
            doc = json.loads(self.path.read_text())
            return {k: v for k, v in doc.items() if isinstance(v, dict)} if isinstance(doc, dict) else {}
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return {}

    def _write(self, entries: dict[str, dict]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps(entries, indent=2))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def entries(self) -> dict[str, dict]:
        with self._lock:
            return self._read()

    @staticmethod
    def orphaned(entry: dict) -> bool:
        """The process that started this stack is gone (crashed, SIGKILLed) or let it go (``up``)."""
        owner = entry.get("owner") or {}
        return bool(entry.get("detached")) or not (
            owner.get("pid") and same_process_alive(owner["pid"], owner.get("create_time")))

    @staticmethod
    def live_processes(key: str) -> list[str]:
        """``"name (pid N)"`` of every process of the stack whose registry is ``key`` that still runs."""
        return [f"{name} (pid {e['pid']})" for name, e in PidRegistry(Path(key)).entries().items()
                if same_process_alive(e["pid"], e.get("create_time"))]

    def _busy(self, subnet: str, key: str, entry: dict) -> SubnetBusy | None:
        """Why ``entry`` (another stack on ``subnet``) may not be touched by a new claim, or None: its owner (a
        drill) still runs, or it is a stack ``tradedrill up`` left running on purpose whose processes live."""
        if not self.orphaned(entry):
            owner = entry["owner"]
            return SubnetBusy(
                f"subnet {subnet} is in use by a running harness process (pid {owner['pid']}, run folder "
                f"{entry.get('run_dir')}); wait for it, stop it with `tradedrill down --all --subnet {subnet}`, or "
                f"choose another --subnet")
        if entry.get("detached") and self.live_processes(key):
            run_dir = entry.get("run_dir") or str(Path(key).parent)
            return SubnetBusy(
                f"subnet {subnet} is in use by the stack `tradedrill up` started in {run_dir}; stop it with "
                f"`tradedrill down --dir {run_dir}`, or choose another --subnet")
        return None

    def check(self, subnet: str) -> None:
        """Raise :class:`SubnetBusy` (the message ``claim`` would give) when another live harness process runs a
        stack on ``subnet`` or a stack ``tradedrill up`` started there still runs; claims nothing. A drill, replay
        or soak asks before it makes its run folder, so a refusal leaves no half-made folder behind (``claim``
        still decides, under its lock, when the stack starts)."""
        me = os.getpid()
        for key, entry in self.entries().items():
            if entry.get("subnet") != subnet or (entry.get("owner") or {}).get("pid") == me:
                continue
            busy = self._busy(subnet, key, entry)
            if busy is not None:
                raise busy

    def claim(self, subnet: str, registry: "PidRegistry", run_dir: Path) -> list[str]:
        """Record that this process runs a stack on ``subnet`` (its processes in ``registry``); first stop what
        earlier stacks on the subnet whose owner is gone left there (returned as ``"name (pid N)"``). Raises
        :class:`SubnetBusy` when another live process runs a stack on the subnet, or a stack ``tradedrill up``
        started there still runs (it is stopped only by ``tradedrill down``)."""
        me = os.getpid()
        mine = str(registry.path)
        stopped: list[str] = []
        while True:
            with self._exclusive():
                leftovers = []
                for key, entry in self._read().items():
                    if key == mine:
                        # this very registry file (a run folder used again): up() reaps what it records; but not
                        # while another live harness process runs that stack (it would be overwritten, then lost)
                        owner = entry.get("owner") or {}
                        if owner.get("pid") != me and not self.orphaned(entry):
                            raise SubnetBusy(
                                f"the run folder {entry.get('run_dir') or Path(key).parent} holds the stack of a "
                                f"running harness process (pid {owner['pid']}, subnet {entry.get('subnet')}); wait "
                                f"for it, stop it with `tradedrill down --all --subnet {entry.get('subnet')}`, or "
                                f"choose another folder")
                        continue
                    if entry.get("subnet") != subnet:
                        continue
                    if (entry.get("owner") or {}).get("pid") == me:
                        continue  # another stack of this very process (tests run several side by side on other ports)
                    busy = self._busy(subnet, key, entry)
                    if busy is not None:
                        raise busy
                    leftovers.append(key)
                if not leftovers:  # checked and recorded under one lock: no other claim slips in between
                    entries = self._read()
                    entries[mine] = {"subnet": subnet, "run_dir": str(run_dir),
                                     "owner": {"pid": me, "create_time": _create_time(me)}, "wall_ts": time.time()}
                    self._write(entries)
                    return stopped
            for key in leftovers:  # outside the lock: killing and waiting takes up to seconds
                stopped += PidRegistry(Path(key)).reap_leftovers(describe=True)
                self._forget(key)

    def reap_under(self, folder: Path) -> list[str]:
        """Stop every stack recorded in ``folder`` (in the index, by its registry or run folder, and any
        ``pids.json`` inside it) before the folder is removed: its ``pids.json`` files are the only record of those
        processes, and a removed record leaves them running where no ``down`` finds them (a variant sweep that
        removed its last sweep's folder did). Forgets them in the index; returns ``"name (pid N)"`` of what it
        stopped. Raises :class:`SubnetBusy`, stopping nothing, when another live harness process runs one of
        them."""
        folder = Path(folder).resolve()
        me = os.getpid()

        def inside(key: str, entry: dict) -> bool:
            paths = [Path(key).parent] + ([Path(entry["run_dir"])] if entry.get("run_dir") else [])
            return any(p.resolve().is_relative_to(folder) for p in paths)

        mine = {k: e for k, e in self.entries().items() if inside(k, e)}
        for key, entry in mine.items():
            owner = entry.get("owner") or {}
            if not self.orphaned(entry) and owner.get("pid") != me:
                raise SubnetBusy(
                    f"{folder} holds the stack of a running harness process (pid {owner['pid']}, run folder "
                    f"{entry.get('run_dir')}, subnet {entry.get('subnet')}); wait for it, or stop it with "
                    f"`tradedrill down --all --subnet {entry.get('subnet')}`")
        stopped: list[str] = []
        for key in mine:
            stopped += PidRegistry(Path(key)).reap_leftovers(describe=True)
            self._forget(key)
        for path in sorted(folder.rglob("pids.json")) if folder.is_dir() else ():   # a record the index lost
            stopped += PidRegistry(path).reap_leftovers(describe=True)
        return stopped

    def detach(self, registry: "PidRegistry") -> None:
        """The owner exits on purpose and leaves the stack running (``tradedrill up``)."""
        with self._exclusive():
            entries = self._read()
            if str(registry.path) in entries:
                entries[str(registry.path)]["detached"] = True
                self._write(entries)

    def release(self, registry: "PidRegistry") -> None:
        """The stack whose processes ``registry`` records is down: forget it."""
        self._forget(str(registry.path))

    def release_run_dir(self, run_dir: Path) -> None:
        """Forget every stack whose run folder is ``run_dir`` (``tradedrill down --dir``), whatever path it was
        recorded under and whether or not its processes still run; not one whose owner (a drill) still runs: that
        owner forgets it at its teardown."""
        run_dir = Path(run_dir).resolve()
        me = os.getpid()

        def of_dir(key: str, entry: dict) -> bool:
            if not (Path(key).parent.resolve() == run_dir
                    or (entry.get("run_dir") and Path(entry["run_dir"]).resolve() == run_dir)):
                return False
            return self.orphaned(entry) or (entry.get("owner") or {}).get("pid") == me

        with self._exclusive():
            entries = self._read()
            keep = {k: v for k, v in entries.items() if not of_dir(k, v)}
            if len(keep) != len(entries):
                self._write(keep)

    def _forget(self, key: str) -> None:
        with self._exclusive():
            entries = self._read()
            if entries.pop(key, None) is not None:
                self._write(entries)

    def reap(self, *, subnet: str | None = None, orphans_only: bool = False,
             owner_timeout: float = 90.0) -> dict[str, list[str]]:
        """Stop every recorded stack (of ``subnet``; only those whose owner is gone when ``orphans_only``) and
        forget it. A stack whose owner still runs (a drill) is stopped through its owner: SIGTERM, so it heals its
        faults and stops its own supervisors (killing its nodes behind its back would only make its supervisor
        restart them); whatever is left after ``owner_timeout`` s is SIGKILLed by PID. A stack ``up`` left
        running is kept when ``orphans_only`` (its own ``down --dir`` or ``--all`` stops it), but forgotten once
        none of its processes runs. Returns ``{run folder: ["name (pid N)" or "owner pid N (SIGTERM)", ...]}``."""
        out: dict[str, list[str]] = {}
        me = os.getpid()
        for key, entry in self.entries().items():
            if subnet is not None and entry.get("subnet") != subnet:
                continue
            if orphans_only and entry.get("detached"):
                if not self.live_processes(key):
                    self._forget(key)  # a stale record of a stack that is gone: nothing to stop
                continue  # a stack `up` left running on purpose is stopped by its own `down --dir`, or --all
            if orphans_only and not self.orphaned(entry):
                continue
            done: list[str] = []
            owner = entry.get("owner") or {}
            if not self.orphaned(entry) and owner.get("pid") != me:
                if signal_process(owner["pid"], owner.get("create_time"), signal.SIGTERM):
                    done.append(f"owner pid {owner['pid']} (SIGTERM: it tears its stack down)")
                try:
                    wait_until(lambda o=owner: not same_process_alive(o["pid"], o.get("create_time")),
                               owner_timeout, f"harness process {owner['pid']} to tear its stack down")
                except DeadlineExceeded:
                    signal_process(owner["pid"], owner.get("create_time"), signal.SIGKILL)
                    done.append(f"owner pid {owner['pid']} (SIGKILL after {owner_timeout:.0f} s)")
            done += PidRegistry(Path(key)).reap_leftovers(describe=True)
            out[entry.get("run_dir", key)] = done
            self._forget(key)
        return out


# see ProcessNode._start: the node's program runs only after one line arrives on stdin (then stdin is /dev/null)
GATE_SHELL = "/bin/sh"
# (the shell exports PWD: it is unset so the node keeps its minimal environment, tests/security)
GATE_SCRIPT = 'read -r _ || exit 70; unset PWD OLDPWD; exec "$@" </dev/null'


class PidRegistry:
    """A JSON file of every process a stack started (name, pid, start time), so a later run can clean up
    after a crashed one: entries are checked by PID *and* start time before anything is signalled."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict]:
        """The recorded entries; a damaged file or entry (not ``{"pid": int, "create_time": float|null}``) is
        skipped: it can name no process we could safely signal."""
        try:
            doc = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return {}
        if not isinstance(doc, dict):
            return {}
        return {str(k): v for k, v in doc.items()
                if isinstance(v, dict) and isinstance(v.get("pid"), int) and not isinstance(v.get("pid"), bool)
                and v["pid"] > 0 and isinstance(v.get("create_time"), (int, float, type(None)))}

    def _write(self, entries: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(entries, indent=2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def kill_all(self) -> list[str]:
        """SIGKILL every recorded live process group now (teardown escalation); returns their names."""
        return [name for name, e in self.entries().items()
                if kill_group(e["pid"], e.get("create_time"), signal.SIGKILL)]

    def _exclusive(self):
        """This process's lock and an flock on ``<file>.lock``: the detached supervisors (EA, backend) and the
        harness rewrite the file from separate processes, and a read-modify-write without it lost records."""
        return flocked(self.path, self._lock)

    def record(self, name: str, pid: int, create_time: float | None) -> None:
        with self._exclusive():
            entries = self._read()
            entries[name] = {"pid": pid, "create_time": create_time}
            self._write(entries)

    def forget(self, name: str) -> None:
        with self._exclusive():
            entries = self._read()
            entries.pop(name, None)
            self._write(entries)

    def entries(self) -> dict[str, dict]:
        with self._lock:
            return self._read()

    def reap_leftovers(self, timeout: float = 5.0, describe: bool = False) -> list[str]:
        """Kill every recorded process that is still alive (a crashed earlier run), stopped ones too (SIGKILL
        needs no SIGCONT); return their names (``describe``: ``"name (pid N)"``)."""
        killed = []
        for name, entry in self.entries().items():
            if kill_group(entry["pid"], entry.get("create_time"), signal.SIGKILL):
                killed.append(f"{name} (pid {entry['pid']})" if describe else name)
        for name, entry in self.entries().items():
            wait_until(
                lambda e=entry: not same_process_alive(e["pid"], e.get("create_time")),
                timeout,
                f"leftover process {name} (pid {entry['pid']}) to exit",
            )
        with self._lock:
            self._write({})
        return killed


@dataclass
class ProcessNode:
    """Handle of one node: a command line, an address, a readiness probe and the signals that hurt it.

    ``ready`` is a predicate that returns True once the node serves; ``wait_ready`` polls it with a deadline.
    ``user`` runs the command as another Unix user (PostgreSQL refuses to run as root), with that user's group and
    no supplementary groups (root's group would follow it otherwise).

    The node gets a minimal environment (:func:`node_environment`: ``PATH``, ``HOME``, ``LANG``/``LC_ALL``, ``TZ``,
    ``USER``/``LOGNAME`` of the account it runs as) plus ``env``, never the caller's whole environment, and a umask
    of 077: what it creates is its own. Its log file is 0600.
    """

    name: str
    role: str
    address: str
    port: int
    argv: Sequence[str]
    log_path: Path
    ready: Callable[[], bool]
    cwd: Path | None = None
    env: dict[str, str] | None = None
    user: str | None = None
    ready_timeout: float = 15.0
    registry: PidRegistry | None = None
    before_start: Callable[[], None] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._create_time: float | None = None
        self._log = None
        self.paused = False
        self.starts = 0
        # start and reap never interleave (a supervisor may restart a node while a fault is still reaping it)
        self._lifecycle = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> "ProcessNode":
        with self._lifecycle:
            return self._start()

    def _start(self) -> "ProcessNode":
        if self.is_alive():
            return self
        if self.before_start:
            self.before_start()
        self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._log:
            self._log.close()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        self._log = open(fd, "ab", buffering=0)
        self._log.write(f"\n=== tradedrill: starting {self.name}: {' '.join(self.argv)}\n".encode())
        env = node_environment(self.user)
        if self.env:
            env.update(self.env)
        group, extra_groups = _groups_of(self.user)
        # an interrupt raised through ``interrupt()`` waits until the child is recorded: it never lands between
        # the start and the registry entry (only SIGKILL of this process can, for the microseconds in between)
        exe = str(self.argv[0])
        if not (os.access(exe, os.X_OK) if os.sep in exe else shutil.which(exe, path=env.get("PATH"))):
            raise NodeStartError(f"{self.name}: cannot run {exe!r}: no such executable")
        section = critical()
        section.__enter__()
        # the start gate: the child is a shell that execs the node only once the registry holds its PID (it reads
        # one line from a pipe this process writes after record()); if this process dies in between (SIGKILL), the
        # pipe closes and the shell exits without starting the node, so no node ever runs unrecorded. The window
        # was 'microseconds' until record() took a file lock: a drill SIGKILLed during stack start left an
        # unrecorded Sentinel holding its port (tests/drills/test_interrupt.py, CI)
        gate_r, gate_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [GATE_SHELL, "-c", GATE_SCRIPT, "tradedrill-gate", *map(str, self.argv)],
                cwd=str(self.cwd) if self.cwd else None,
                env=env,
                stdin=gate_r,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.user,
                group=group,
                extra_groups=extra_groups,
                umask=0o077,
            )
            os.close(gate_r)
            gate_r = -1
            self._create_time = _create_time(self._proc.pid)
            if self.registry:
                self.registry.record(self.name, self._proc.pid, self._create_time)
            os.write(gate_w, b"start\n")   # recorded: the gate execs the node (same PID, same start time)
        except FileNotFoundError as exc:
            raise NodeStartError(f"{self.name}: cannot run {self.argv[0]!r}: {exc.strerror}") from exc
        finally:
            for fd in (gate_r, gate_w):
                if fd >= 0:
                    os.close(fd)
            section.__exit__(None, None, None)
        self.paused = False
        self.starts += 1
        return self

    def wait_ready(self, timeout: float | None = None) -> "ProcessNode":
        timeout = self.ready_timeout if timeout is None else timeout

        def probe() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise NodeStartError(
                    f"{self.name} exited with status {self._proc.returncode} before it was ready; "
                    f"its log is {self.log_path}:\n{self.log_tail()}"
                )
            return bool(self.ready())

        try:
            wait_until(probe, timeout, f"{self.name} at {self.address}:{self.port} to be ready")
        except NodeStartError:
            raise
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

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def create_time(self) -> float | None:
        return self._create_time

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def signal(self, sig: int) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        kill_group(self._proc.pid, self._create_time, sig)

    # -- faults -------------------------------------------------------------------------------------------------
    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the node's process group and reap it."""
        with self._lifecycle:
            self.signal(signal.SIGKILL)
            self._reap(timeout)

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if the node has not exited by the deadline."""
        if self.paused:
            self.resume()
        self.signal(signal.SIGTERM)
        try:
            self._reap(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def pause(self) -> None:
        """SIGSTOP the whole process group (Jepsen's "hammer time")."""
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def restart(self, ready: bool = True) -> "ProcessNode":
        self.terminate()
        self.start()
        return self.wait_ready() if ready else self

    def stop(self) -> None:
        """Stop for good (teardown): SIGCONT a paused node first so it can handle SIGTERM, then escalate."""
        if self._proc is None:
            return
        if self.is_alive():
            self.resume()
            self.terminate(timeout=5.0)
        self._reap(5.0)
        if self.registry:
            self.registry.forget(self.name)

    def _reap(self, timeout: float) -> None:
        with self._lifecycle:
            self._reap_locked(timeout)

    def _reap_locked(self, timeout: float) -> None:
        if self._proc is None:
            return
        self._proc.wait(timeout=timeout)
        # children of the group may outlive the leader for a moment (e.g. PostgreSQL backends)
        for pid in group_members(self._proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.paused = False
        if self._log:
            self._log.close()
            self._log = None

    def describe(self) -> dict:
        return {
            "name": self.name,
            "role": self.role,
            "address": self.address,
            "port": self.port,
            "pid": self.pid,
            "alive": self.is_alive(),
            "paused": self.paused,
            "log": str(self.log_path),
        }


# -- interrupts that wait for a critical section (a signal mask would be inherited by every child) ---------------
_critical_depth = 0
_pending_interrupt: BaseException | None = None


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A section an interrupt raised through :func:`interrupt` waits for (Python runs signal handlers in the main
    thread, so only the main thread's sections count)."""
    global _critical_depth, _pending_interrupt
    main = threading.current_thread() is threading.main_thread()
    if main:
        _critical_depth += 1
    try:
        yield
    finally:
        if main:
            _critical_depth -= 1
            if _critical_depth == 0 and _pending_interrupt is not None:
                exc, _pending_interrupt = _pending_interrupt, None
                raise exc


def interrupt(exc: BaseException) -> None:
    """Raise ``exc`` from a signal handler now, or when the main thread leaves its critical section."""
    global _pending_interrupt
    if _critical_depth:
        _pending_interrupt = exc
        return
    raise exc


def stop_all(nodes: Iterable[ProcessNode]) -> list[str]:
    """Stop every node, collecting errors instead of stopping at the first; return the error messages."""
    errors = []
    for node in nodes:
        try:
            node.stop()
        except Exception as exc:  # noqa: BLE001 - teardown must go on for the other nodes
            errors.append(f"{node.name}: {exc!r}")
    return errors
