"""Every Redis node stopped, its AOF damaged, started again through BR-1's recovery order (issue 13: RDS-3, RDS-6,
BR-1).

``AofDamaged`` injects: it reads the trade state the primary holds (``snapshot()``: the acknowledged writes to
verify after the restart) and each node's persistence settings (``config_of()``: CONFIG GET on the running node,
RDS-3), stops every Redis node by its handle - ``stop="term"``: SIGTERM, Redis saves its RDB on the way out, as a
planned stop does; ``stop="kill"``: SIGKILL, a crash, so the RDB is whatever ``save`` last wrote (or a replica's
initial sync; or none) and BR-1's "last RDB" is really the last one - then damages each node's AOF at a seeded offset (the newest incremental file; the base when
there is none): ``DAMAGE`` overwritten in place, so ``redis-check-aof`` must refuse it. Its heal runs the recovery
(``recover(data_dir)``: ``reference.store.redis_recovery.recover_files``) for every node, the primary first,
starts each node again, waits until the primary has loaded, and verifies the restored state against the snapshot
(``snapshot()`` again): every key and stream entry read before the stop must be there; ``verify_journal()`` is BR-1's
own last step (the restored RTS against the engines' DuckDB snapshots). ``restore(data_dir)`` (RDS-6's "else from
DuckDB", ``reference.store.redis_restore.restore_offline``) runs on the primary's recovered files before any node
starts: what the engines' journals hold and the files lost is written back while nothing else can write (its report
is the heal's ``journal_restore``). The heal line carries every
node's decision (AOF or RDB, what each tool said, where the damaged files are kept), ``lost`` (what was read before
and is missing after), ``recovery_s`` (heal start to the files decided) and ``verified_s`` (heal start to the state
verified: BR-1's "Redis restart to trade state verified").
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from faults.core import Fault, FaultError

DAMAGE = b"\r\n*garbled-by-tradedrill*\r\n"
STOPS = ("term", "kill")   # SIGTERM (Redis saves its RDB on the way out) or SIGKILL (a crash: no save)


def rdb_state(data_dir: Path) -> dict:
    """The RDB a recovery would fall back on: whether ``dump.rdb`` exists, its size and age (s)."""
    rdb = Path(data_dir) / "dump.rdb"
    try:
        st = rdb.stat()
    except OSError:
        return {"exists": False}
    return {"exists": True, "bytes": st.st_size, "age_s": round(time.time() - st.st_mtime, 3)}


def aof_files(data_dir: Path) -> list[Path]:
    """A node's AOF files, newest incremental first, base last (Redis 7's appendonlydir; else appendonly.aof)."""
    folder = data_dir / "appendonlydir"
    if folder.is_dir():
        incr = sorted(folder.glob("*.incr.aof"), key=lambda p: p.name, reverse=True)
        base = sorted(folder.glob("*.base.*"), key=lambda p: p.name, reverse=True)
        return [p for p in (*incr, *base) if p.stat().st_size > 0]
    single = data_dir / "appendonly.aof"
    return [single] if single.exists() and single.stat().st_size > 0 else []


def damage_aof(data_dir: Path, rng: random.Random) -> dict:
    """Overwrite ``DAMAGE`` into the first non-empty AOF file of ``data_dir`` at a seeded offset; what was done."""
    files = aof_files(data_dir)
    if not files:
        raise FaultError(f"{data_dir} has no AOF to damage (is appendonly on?)")
    path = files[0]
    size = path.stat().st_size
    offset = rng.randrange(0, max(1, size - len(DAMAGE)))
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(DAMAGE)
        fh.flush()
        os.fsync(fh.fileno())
    return {"file": str(path.relative_to(data_dir)), "offset": offset, "size": size}


class AofDamaged(Fault):
    name = "redis-aof-damaged"

    def __init__(self, nodes: Sequence[Any], data_dirs: dict[str, Path], *, primary: Callable[[], str],
                 snapshot: Callable[[], dict[str, list[str]]], recover: Callable[[Path], Any],
                 rng: random.Random, verify_journal: Callable[[], dict] | None = None,
                 config_of: Callable[[], dict] | None = None, stop: str = "term",
                 restore: Callable[[Path], dict] | None = None,
                 ready_timeout: float = 30.0, verify_timeout: float = 30.0, **kw):
        super().__init__(**kw)
        if stop not in STOPS:
            raise FaultError(f"stop {stop!r}: use one of {', '.join(STOPS)}")
        self.stop = stop
        self.config_of = config_of   # RDS-3: CONFIG GET of every running node, before the stop and after the start
        self.nodes = list(nodes)
        self.data_dirs = data_dirs
        self.primary = primary
        self.snapshot = snapshot
        self.recover = recover
        self.verify_journal = verify_journal   # BR-1's last step, the system's own: RTS against DuckDB
        self.restore = restore                 # RDS-6: else from DuckDB, on the primary's files before they serve
        self.rng = rng
        self.ready_timeout = ready_timeout
        self.verify_timeout = verify_timeout
        self._before: dict[str, list[str]] = {}
        self._primary_name: str | None = None
        self._details: dict[str, Any] = {"nodes": [n.name for n in self.nodes]}

    def describe(self) -> str:
        how = "SIGKILL" if self.stop == "kill" else "SIGTERM"
        return (f"{how} every Redis node ({', '.join(n.name for n in self.nodes)}), damage each AOF; heal: BR-1 "
                f"recovery")

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def _inject(self) -> None:
        self._primary_name = self.primary()
        self._before = self.snapshot()
        self._details.update(primary=self._primary_name, before={k: len(v) for k, v in self._before.items()},
                             stop="SIGKILL" if self.stop == "kill" else "SIGTERM")
        if self.config_of is not None:
            self._details["config_before"] = self._config()
        for node in self.nodes:
            if self.stop == "kill":
                node.kill()        # a crash: no RDB written on the way out
            else:
                node.terminate()   # SIGTERM by its handle: Redis writes its RDB on the way out
            if node.is_alive():
                raise FaultError(f"{node.name} did not stop")
        self._details["rdb_at_stop"] = {n.name: rdb_state(Path(self.data_dirs[n.name])) for n in self.nodes}
        damaged = {}
        for node in self.nodes:
            damaged[node.name] = damage_aof(Path(self.data_dirs[node.name]), self.rng)
        self._details["damaged"] = damaged

    def _heal(self) -> None:
        from tradedrill.waiting import wait_until

        t0 = time.monotonic()
        order = sorted(self.nodes, key=lambda n: n.name != self._primary_name)
        decisions = {}
        for node in order:
            if node.is_alive():
                continue
            try:
                decision = self.recover(Path(self.data_dirs[node.name]))
            except Exception as exc:  # noqa: BLE001 - one line in the record (e.g. damaged/ is a file); it starts as found
                decisions[node.name] = {"source": "error", "error": " ".join(str(exc).split())[:300]
                                        or type(exc).__name__}
                continue
            decisions[node.name] = decision.to_dict() if hasattr(decision, "to_dict") else dict(decision)
        self._details["recovery"] = decisions
        self._details["recovery_s"] = round(time.monotonic() - t0, 6)
        primary = next((n for n in order if n.name == self._primary_name), None)
        if self.restore is not None and primary is not None and not primary.is_alive():
            try:
                self._details["journal_restore"] = {"node": primary.name,
                                                    **self.restore(Path(self.data_dirs[primary.name]))}
            except Exception as exc:  # noqa: BLE001 - recorded: the checker says the restore did not run
                self._details["journal_restore"] = {"node": primary.name,
                                                    "error": " ".join(str(exc).split())[:300] or type(exc).__name__}
            self._details["restore_s"] = round(time.monotonic() - t0, 6)
        for node in order:
            if not node.is_alive():
                node.start()
        for node in order:
            node.wait_ready(self.ready_timeout)
        after: dict[str, list[str]] = {}

        def verified() -> bool:
            nonlocal after
            try:
                after = self.snapshot()
            except Exception:  # noqa: BLE001 - still loading or failing over: try again until the deadline
                return False
            return True

        wait_until(verified, self.verify_timeout, "the restored Redis primary to answer the verification reads")
        if self.verify_journal is not None:
            try:
                self._details["journal_check"] = self.verify_journal()
            except Exception as exc:  # noqa: BLE001 - recorded: the checker says the verification did not run
                self._details["journal_check"] = {"error": " ".join(str(exc).split())[:300] or type(exc).__name__}
        if self.config_of is not None:
            self._details["config_after"] = self._config()
        lost = {k: sorted(set(v) - set(after.get(k, ())))[:50] for k, v in self._before.items()}
        self._details.update(after={k: len(v) for k, v in after.items()},
                             lost={k: len(set(v) - set(after.get(k, ()))) for k, v in self._before.items()},
                             lost_examples={k: v for k, v in lost.items() if v},
                             verified_s=round(time.monotonic() - t0, 6))

    def _config(self) -> dict:
        try:
            return self.config_of()
        except Exception as exc:  # noqa: BLE001 - recorded: the checker says the settings were not read
            return {"error": " ".join(str(exc).split())[:300] or type(exc).__name__}
