"""BR-1's recovery order for one Redis node's files, run while the node is stopped, before it starts again
(RDS-3, RDS-6, BR-1; issue 13).

1. **AOF**: ``redis-check-aof`` on the AOF (Redis 7's manifest in ``appendonlydir/``, or a single
   ``appendonly.aof``). Valid: the node starts from it (``source = "aof"``).
2. **else the last RDB**: ``redis-check-rdb`` on ``dump.rdb``. Valid: the damaged AOF folder is moved aside as
   evidence (``<dir>/damaged/<name>-<UTC time>``, never deleted) and a fresh AOF folder is made whose base *is* that
   RDB (a manifest naming ``<appendfilename>.1.base.rdb``, type ``b``), so the node loads the snapshot with
   ``appendonly yes`` unchanged (Redis 7 loads no ``dump.rdb`` when AOF is on and the AOF is missing: it would
   start empty) and goes on appending to a new incremental file (``source = "rdb"``).
3. **else** the AOF cut at its first bad command (``redis-check-aof --fix`` on a copy kept as evidence first):
   everything after the damage is lost and the report says so (``source = "aof-truncated"``); with nothing usable
   at all the node starts empty (``source = "none"``).

Then (step 3 of BR-1, not here: it needs the running node) the restored state is verified against DuckDB / the
broker ledger; ``scenarios`` does that for the drill. Every step says what it saw (the tool's verdict line).
Files made here get the owner of the data folder (the node's account).
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

TOOL_TIMEOUT_S = 60.0
TRIAL_LOAD_TIMEOUT_S = 60.0   # a trial load of the AOF (redis-server on a unix socket, no TCP port)


class RedisRecoveryError(RuntimeError):
    """The node's folder is in a state recovery cannot act on; the message is one line naming the path and what to
    do."""


@dataclass
class RedisRecovery:
    """What :func:`recover_files` decided for one node's folder."""

    data_dir: str
    source: str                     # aof | rdb | aof-truncated | none
    aof: str | None = None          # the AOF checked (manifest or file), relative to data_dir
    aof_ok: bool | None = None
    aof_report: str = ""            # redis-check-aof's verdict line
    rdb_ok: bool | None = None
    rdb_report: str = ""
    damaged_kept: str | None = None  # where the damaged AOF now lies (evidence)
    aof_keys: int | None = None     # keys the AOF loads (trial load), when compared with the RDB
    rdb_keys: int | None = None     # keys redis-check-rdb read from the RDB
    seconds: float = 0.0
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _verdict(output: str, good: tuple[str, ...]) -> str:
    """The tool's line that says valid or not (else its last non-empty line)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in reversed(lines):
        low = ln.lower()
        if "not valid" in low or "invalid" in low or "error" in low or any(g in low for g in good):
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def _run(argv: list[str], stdin: str | None = None) -> tuple[int, str]:
    # the tools echo bytes of the damaged file: never fail on them
    proc = subprocess.run(argv, input=stdin, capture_output=True, encoding="utf-8", errors="replace",
                          timeout=TOOL_TIMEOUT_S)
    return proc.returncode, (proc.stdout or "") + (proc.stderr or "")


def find_aof(data_dir: Path, appendfilename: str = "appendonly.aof", appenddirname: str = "appendonlydir") -> Path | None:
    """The AOF to check: Redis 7's manifest, else a single-file AOF, else None."""
    manifest = data_dir / appenddirname / f"{appendfilename}.manifest"
    if manifest.exists():
        return manifest
    single = data_dir / appendfilename
    return single if single.exists() else None


def _chown_like(path: Path, like: Path) -> None:
    st = like.stat()
    if os.geteuid() == 0:
        os.chown(path, st.st_uid, st.st_gid)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rdb_keys(report: str) -> int | None:
    m = re.search(r"\[info\]\s+([0-9]+)\s+keys read", report or "")
    return int(m.group(1)) if m else None


def trial_load_keys(data_dir: Path, aof: Path, *, appendfilename: str, appenddirname: str,
                    redis_server: str = "redis-server") -> tuple[int | None, str]:
    """The number of keys Redis loads from the AOF ``aof`` (a copy, in a temporary folder, loaded by a
    ``redis-server`` listening on a unix socket only, stopped by its handle), and one line saying how it went."""
    import tempfile

    import redis

    work = Path(tempfile.mkdtemp(prefix="redis-trial-"))
    proc = None
    try:
        if aof.parent != data_dir:
            shutil.copytree(aof.parent, work / appenddirname)
        else:
            shutil.copy2(aof, work / appendfilename)
        sock = work / "trial.sock"
        argv = [redis_server, "--port", "0", "--unixsocket", str(sock), "--dir", str(work), "--save", "",
                "--appendonly", "yes", "--appendfilename", appendfilename, "--appenddirname", appenddirname,
                "--dbfilename", "trial-none.rdb", "--aof-load-truncated", "no", "--daemonize", "no",
                "--logfile", str(work / "trial.log")]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        except OSError as exc:
            return None, f"trial load not possible: {redis_server}: {exc.strerror or exc}"
        deadline = time.monotonic() + TRIAL_LOAD_TIMEOUT_S
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=5)
        while True:
            try:
                return int(client.dbsize()), "trial load ok"
            except (redis.BusyLoadingError, redis.ConnectionError):
                pass
            except redis.RedisError as exc:
                return None, f"trial load failed: {' '.join(str(exc).split())[:160]}"
            if time.monotonic() >= deadline:
                return None, f"trial load gave no answer within {TRIAL_LOAD_TIMEOUT_S:g} s"
            try:
                code = proc.wait(timeout=0.02)   # the pause between tries is a wait on the trial process itself
            except subprocess.TimeoutExpired:
                continue
            return None, f"trial load: redis-server exited with status {code} while loading the AOF"
    finally:
        stop_scratch_server(proc, work)


def _damaged_folder(data_dir: Path) -> Path:
    damaged = data_dir / "damaged"
    if damaged.exists() and not damaged.is_dir():
        raise RedisRecoveryError(f"{damaged} is a file, not the evidence folder: recovery keeps damaged files there; "
                                 f"move that file elsewhere and run the recovery again")
    damaged.mkdir(mode=0o700, exist_ok=True)
    return damaged


def recover_files(data_dir: Path | str, *, appendfilename: str = "appendonly.aof",
                  appenddirname: str = "appendonlydir", dbfilename: str = "dump.rdb",
                  check_aof: str = "redis-check-aof", check_rdb: str = "redis-check-rdb",
                  redis_server: str = "redis-server") -> RedisRecovery:
    """Check a stopped node's AOF and RDB and leave the files it should start from (see the module docstring).
    Never deletes a damaged file: it is moved under ``<data_dir>/damaged/``. A valid AOF that loads fewer keys
    than the valid RDB holds (an emptied incremental file passes redis-check-aof) gives way to the RDB, and the
    record says so. Raises RedisRecoveryError (one line) when ``damaged`` is a file or the folder is missing."""
    started = time.monotonic()
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise RedisRecoveryError(f"Redis data folder {data_dir} does not exist or is not a folder")
    out = RedisRecovery(str(data_dir), "none")
    aof = find_aof(data_dir, appendfilename, appenddirname)
    aof_dir = data_dir / appenddirname
    rdb = data_dir / dbfilename
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    if aof is None and (aof_dir.exists() or aof_dir.is_symlink()):
        what = "a file, not a folder" if not aof_dir.is_dir() else f"a folder without {appendfilename}.manifest"
        out.steps.append(f"{appenddirname} is {what}: no AOF Redis can load")
    if aof is not None:
        out.aof = str(aof.relative_to(data_dir))
        code, text = _run([check_aof, str(aof)])
        out.aof_ok = code == 0
        out.aof_report = _verdict(text, ("is valid", "are valid"))
        out.steps.append(f"redis-check-aof {out.aof}: {out.aof_report}")
    elif not out.steps:
        out.steps.append("no AOF found")
    if out.aof_ok and not rdb.exists():
        out.source = "aof"
        out.seconds = round(time.monotonic() - started, 6)
        return out
    if rdb.exists():
        code, text = _run([check_rdb, str(rdb)])
        out.rdb_ok = code == 0
        out.rdb_report = _verdict(text, ("rdb looks ok",))
        out.rdb_keys = _rdb_keys(text) if out.rdb_ok else None
        out.steps.append(f"redis-check-rdb {dbfilename}: {out.rdb_report}"
                         + (f" ({out.rdb_keys} keys)" if out.rdb_keys is not None else ""))
    else:
        out.rdb_ok = False
        out.rdb_report = f"{dbfilename} does not exist"
        out.steps.append(out.rdb_report)
    if out.aof_ok:
        # redis-check-aof checks the format, not the content: an emptied incremental file is valid. Compare what
        # the AOF loads with what the RDB holds, and take the RDB when the AOF holds less.
        if out.rdb_ok and out.rdb_keys:
            out.aof_keys, how = trial_load_keys(data_dir, aof, appendfilename=appendfilename,
                                                appenddirname=appenddirname, redis_server=redis_server)
            if out.aof_keys is None:
                out.steps.append(f"{how}; the AOF is used as it is")
            elif out.aof_keys < out.rdb_keys:
                out.steps.append(f"the AOF loads {out.aof_keys} keys, {dbfilename} holds {out.rdb_keys}: the AOF "
                                 f"holds less, the RDB is preferred")
                out.aof_ok = False
            else:
                out.steps.append(f"the AOF loads {out.aof_keys} keys, {dbfilename} holds {out.rdb_keys}: the AOF "
                                 f"is used")
        if out.aof_ok:
            out.source = "aof"
            out.seconds = round(time.monotonic() - started, 6)
            return out
    if out.rdb_ok:
        # whatever is where the new AOF folder goes (the damaged AOF, a folder without manifest, a file of that
        # name) is kept as evidence first
        moving = [p for p in {aof_dir if aof is not None and aof.parent == aof_dir else aof, aof_dir}
                  if p is not None and (p.exists() or p.is_symlink())]
        if moving:
            damaged = _damaged_folder(data_dir)
            kept = []
            for path in sorted(moving):
                moved = damaged / f"{path.name}-{stamp}"
                os.replace(path, moved)
                kept.append(str(moved.relative_to(data_dir)))
            out.damaged_kept = kept[0]
            out.steps.append(f"{'damaged ' if aof is not None and out.aof_keys is None else ''}AOF kept as "
                             f"{', '.join(kept)}")
        aof_dir.mkdir(mode=0o700)
        base = aof_dir / f"{appendfilename}.1.base.rdb"
        shutil.copyfile(rdb, base)
        manifest = aof_dir / f"{appendfilename}.manifest"
        manifest.write_text(f"file {base.name} seq 1 type b\n")
        for path in (base, manifest, aof_dir):
            _chown_like(path, data_dir)
            _fsync(path)
        _fsync(data_dir)
        out.source = "rdb"
        out.steps.append(f"{dbfilename} installed as the base of a new AOF ({appenddirname}/{base.name})")
    elif aof is not None:
        damaged = _damaged_folder(data_dir)
        evidence = damaged / f"{aof.parent.name if aof.parent != data_dir else aof.name}-{stamp}"
        if aof.parent != data_dir:
            shutil.copytree(aof.parent, evidence)
        else:
            shutil.copy2(aof, evidence)
        out.damaged_kept = str(evidence.relative_to(data_dir))
        code, text = _run([check_aof, "--fix", str(aof)], stdin="y\n")
        verdict = _verdict(text, ("successfully truncated", "is valid"))
        out.steps.append(f"redis-check-aof --fix: {verdict} (copy kept as {out.damaged_kept})")
        out.source = "aof-truncated" if code == 0 else "none"
        if code != 0:
            os.replace(aof.parent if aof.parent != data_dir else aof, damaged / f"unusable-{stamp}")
            out.steps.append("no usable AOF or RDB: the node starts empty")
    elif aof_dir.exists() and not aof_dir.is_dir():
        damaged = _damaged_folder(data_dir)
        os.replace(aof_dir, damaged / f"{aof_dir.name}-{stamp}")
        out.damaged_kept = f"damaged/{aof_dir.name}-{stamp}"
        out.steps.append(f"no usable AOF or RDB: {appenddirname} (a file) kept as {out.damaged_kept}; the node "
                         f"starts empty")
    out.seconds = round(time.monotonic() - started, 6)
    return out


_OFFSET = re.compile(r"ok_up_to=([0-9]+)")


def damage_point(report: str) -> int | None:
    """The byte offset up to which redis-check-aof found the file valid (``ok_up_to=``), if it said."""
    m = _OFFSET.search(report or "")
    return int(m.group(1)) if m else None


# -- BR-1's last step: the restored state verified against DuckDB -------------------------------------------------
FINAL = ("DONE", "REJECTED")


def _taken_ms(path: Path) -> int:
    """The time a snapshot was taken, from its name ``journal-<i>.h<hwm>.t<epoch ms>.duckdb`` (0 if unreadable)."""
    stamp = path.name.rsplit(".t", 1)[-1].split(".", 1)[0]
    return int(stamp) if stamp.isdigit() else 0


def published_outcomes(snapshot_dirs) -> tuple[dict[str, str], list[str]]:
    """``{signal id: final state}`` of every outcome an engine's newest readable DuckDB snapshot
    (``<state_dir>/backup/duckdb``, DDB-2) says was published to Redis, and one line per snapshot folder read (or
    why not). Snapshots are read, never the live journal (its engine holds it)."""
    import duckdb

    out: dict[str, str] = {}
    notes: list[str] = []
    for folder in snapshot_dirs:
        folder = Path(folder)
        files = sorted(folder.glob("journal-*.h*.t*.duckdb"), key=_taken_ms, reverse=True)
        for path in files:
            try:
                con = duckdb.connect(str(path), read_only=True)
                try:
                    # the journal's own fold: the compacted intents, then the newest logged row of each signal
                    log = ("UNION ALL SELECT signal_id, state, published, seq FROM intent_log"
                           if con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = "
                                          "'intent_log'").fetchone()[0] else "")
                    rows = con.execute(
                        "SELECT signal_id, state FROM (SELECT *, row_number() OVER (PARTITION BY signal_id ORDER "
                        "BY seq DESC) AS newest FROM (SELECT signal_id, state, published, -1 AS seq FROM intents "
                        f"{log})) WHERE newest = 1 AND published AND state IN ('DONE', 'REJECTED')").fetchall()
                finally:
                    con.close()
            except (duckdb.Error, OSError) as exc:   # pruned meanwhile, or damaged: the next older one
                notes.append(f"{path.name}: unreadable ({type(exc).__name__})")
                continue
            out.update({str(sid): str(state) for sid, state in rows})
            notes.append(f"{path.name}: {len(rows)} published outcome(s)")
            break
        else:
            notes.append(f"{folder}: no readable snapshot")
    return out, notes


def verify_against_journals(client, rts_key, published: dict[str, str]) -> dict:
    """BR-1's verification: every outcome the engines' journals say they published must have its RTS hash in the
    restored Redis (``rts_key(signal_id)`` names it). Returns ``checked``, ``missing`` (count) and up to 20 of the
    missing signal ids."""
    ids = sorted(published)
    missing: list[str] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        pipe = client.pipeline(transaction=False)
        for sid in chunk:
            pipe.exists(rts_key(sid))
        missing += [sid for sid, found in zip(chunk, pipe.execute()) if not found]
    return {"checked": len(ids), "missing": len(missing), "missing_examples": missing[:20]}


def stop_scratch_server(proc: subprocess.Popen | None, work: Path) -> None:
    """Stop a private redis-server this module (or ``redis_restore``) started on a copy, by its handle (SIGTERM,
    SIGKILL after 10 s), and remove its scratch folder."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(work, ignore_errors=True)
