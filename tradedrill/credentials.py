"""The local stack's secrets and private files: one set of generated passwords per run folder, readable only by the
user that runs the harness, and the Unix accounts the servers run as.

Layout of a run folder (``docs/SECURITY.md`` has the why)::

    <run_dir>/                      0700 (+ a POSIX ACL entry "--x" for each service account that runs a node there)
      secrets/                      0700 (+ "--x" for the redis account): every file that holds a secret, and no other
        secrets.json                0600: every password of the run (harness, engine, backend, replica, sentinel,
                                    postgres, clickhouse)
        redis-engine.password       0600: what the engine reads (``redis_password_file``), one file per client role
        redis-backend.password
        pgpass                      0600: libpq's password file (``postgres_dsn()`` names it, never the password)
        redis-1/redis.conf ...      0700/0600, owned by the node's account: Redis and Sentinel configs hold
        sentinel-1/sentinel.conf    ``masterauth`` / ``auth-pass`` in plain text (Redis writes them there itself on
                                    CONFIG REWRITE and on every Sentinel state change), so they live here
      data/<node>/                  0700, owned by the node's account (ACL files and users.xml hold hashes only)
      logs/<node>.log, pids.json, stack.json, engine.json ...   0600

Passwords are generated once per run folder (the PostgreSQL cluster keeps its password across ``up``s of the same
folder) and never appear on a command line, in an environment variable, in a log or in a config file outside
``secrets/``.
"""
from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SECRETS_DIR = "secrets"
SECRETS_FILE = "secrets.json"
# the Redis (and Sentinel) users: one per role; every Redis node and every Sentinel knows all of them
REDIS_ROLES = ("harness", "engine", "backend", "replica", "sentinel", "ea")
# roles whose programs read their password from a file of their own (``redis_password_file``)
PASSWORD_FILE_ROLES = ("engine", "backend", "ea")
POSTGRES_USER = "postgres"
CLICKHOUSE_USER = "default"


class SecretsError(RuntimeError):
    """The secrets of a run folder cannot be read or written; the message says which file and why."""


@dataclass(frozen=True)
class Credential:
    """A user name and its password (never printed: ``repr`` leaves the password out)."""

    username: str
    password: str = field(repr=False)

    def redis_kwargs(self) -> dict:
        return {"username": self.username, "password": self.password}


def _token() -> str:
    return secrets.token_hex(24)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class StackSecrets:
    """The passwords of one run folder. ``ensure(run_dir)`` loads them or generates them on first use;
    ``load(run_dir)`` only reads (``tradedrill status``); ``ephemeral()`` makes a set that is never written (a
    config rendered without a run folder is locked with passwords nobody knows)."""

    def __init__(self, doc: dict, run_dir: Path | None = None):
        self.doc = doc
        self.run_dir = Path(run_dir) if run_dir is not None else None

    # -- where -------------------------------------------------------------------------------------------------
    @staticmethod
    def folder_of(run_dir: Path | str) -> Path:
        return Path(run_dir) / SECRETS_DIR

    @staticmethod
    def path_of(run_dir: Path | str) -> Path:
        return Path(run_dir) / SECRETS_DIR / SECRETS_FILE

    @property
    def folder(self) -> Path:
        if self.run_dir is None:
            raise SecretsError("these secrets belong to no run folder (ephemeral)")
        return self.folder_of(self.run_dir)

    @property
    def path(self) -> Path:
        return self.folder / SECRETS_FILE

    # -- making and reading ------------------------------------------------------------------------------------
    @staticmethod
    def generate() -> dict:
        return {
            "version": 1,
            "redis": {role: {"username": role, "password": _token()} for role in REDIS_ROLES},
            "postgres": {"username": POSTGRES_USER, "password": _token()},
            "clickhouse": {"username": CLICKHOUSE_USER, "password": _token()},
        }

    @classmethod
    def ephemeral(cls) -> "StackSecrets":
        return cls(cls.generate())

    @classmethod
    def load(cls, run_dir: Path | str) -> "StackSecrets | None":
        """The run folder's secrets, or None when it has none (a folder of an older version, or no folder)."""
        path = cls.path_of(run_dir)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except PermissionError:
            raise SecretsError(f"cannot read {path}: it belongs to another user (run this command as the user "
                               f"that started the stack)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SecretsError(f"{path} is damaged ({exc}); stop the stack by PID with `tradedrill down`, "
                               f"delete the run folder and start again") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("redis"), dict):
            raise SecretsError(f"{path} is not a tradedrill secrets file")
        return cls(doc, Path(run_dir))

    @classmethod
    def ensure(cls, run_dir: Path | str) -> "StackSecrets":
        """Load the run folder's secrets, generating them (0600 in a 0700 folder) on first use; also (re)writes the
        per-role password files and libpq's password file."""
        run_dir = Path(run_dir)
        private_dir(run_dir)
        folder = private_dir(cls.folder_of(run_dir))
        path = folder / SECRETS_FILE
        existing = cls.load(run_dir)
        if existing is None:
            doc = cls.generate()
            if not write_private(path, json.dumps(doc, indent=2), exclusive=True):
                existing = cls.load(run_dir)  # another process made them first: use those
            else:
                existing = cls(doc, run_dir)
        os.chmod(path, 0o600)
        missing = [r for r in REDIS_ROLES if r not in existing.doc["redis"]]
        if missing and "postgres" in existing.doc and "clickhouse" in existing.doc:
            # a run folder of a version with fewer roles (the EA's, issue 14): its new roles get passwords of
            # their own; the others keep theirs
            for role in missing:
                existing.doc["redis"][role] = {"username": role, "password": _token()}
            write_private(path, json.dumps(existing.doc, indent=2))
            missing = []
        if missing or "postgres" not in existing.doc or "clickhouse" not in existing.doc:
            raise SecretsError(f"{path} lacks the passwords of {missing or ['postgres/clickhouse']}; delete the run "
                               f"folder and start again")
        for role in PASSWORD_FILE_ROLES:
            write_private(existing.password_file(role), existing.redis(role).password + "\n")
        return existing

    # -- what ----------------------------------------------------------------------------------------------------
    def redis(self, role: str) -> Credential:
        try:
            entry = self.doc["redis"][role]
        except KeyError:
            raise SecretsError(f"no Redis user for role {role!r}; roles: {', '.join(REDIS_ROLES)}") from None
        return Credential(entry["username"], entry["password"])

    @property
    def harness(self) -> Credential:
        """The harness's Redis/Sentinel user (every command, every key)."""
        return self.redis("harness")

    def postgres(self) -> Credential:
        return Credential(self.doc["postgres"]["username"], self.doc["postgres"]["password"])

    def clickhouse(self) -> Credential:
        return Credential(self.doc["clickhouse"]["username"], self.doc["clickhouse"]["password"])

    def password_file(self, role: str) -> Path:
        """The file holding the password of Redis role ``role`` alone (what a client's config may name)."""
        return self.folder / f"redis-{role}.password"

    def pgpass(self, host: str, port: int) -> Path:
        """libpq's password file for the server at ``host:port`` (written on demand, 0600)."""
        cred = self.postgres()
        path = self.folder / "pgpass"
        line = f"{host}:{port}:*:{cred.username}:{cred.password}\n"
        try:
            if path.read_text() == line:
                return path
        except FileNotFoundError:
            pass
        write_private(path, line)
        return path

    def values(self) -> list[str]:
        """Every secret of the run (what must appear in no other file of the run folder)."""
        out = [e["password"] for e in self.doc["redis"].values()]
        out += [self.doc["postgres"]["password"], self.doc["clickhouse"]["password"]]
        return out


# -- private files and folders -------------------------------------------------------------------------------------
def write_private(path: Path, text: str, *, exclusive: bool = False, owner: str | None = None) -> bool:
    """Write ``text`` to ``path`` as a 0600 file (atomically: a reader never sees a half-written or a world-readable
    file). ``exclusive``: only if ``path`` does not exist yet; returns False when it already did. ``owner``: a Unix
    account that gets the file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if owner:
            account = pwd.getpwnam(owner)
            os.fchown(fd, account.pw_uid, account.pw_gid)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if exclusive:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        return True
    os.replace(tmp, path)
    return True


def private_dir(path: Path, owner: str | None = None) -> Path:
    """``path`` as a folder only its owner can enter (0700; ``owner``: that Unix account owns it). Parents that do
    not exist yet are made with the default mode; an existing folder is tightened to 0700 (its ACL entries, set by
    :func:`grant_traverse`, stay as they are)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if owner:
        account = pwd.getpwnam(owner)
        if (st.st_uid, st.st_gid) != (account.pw_uid, account.pw_gid):
            # a folder an earlier run made as another user: everything in it changes hands too
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), account.pw_uid, account.pw_gid)
            os.chown(path, account.pw_uid, account.pw_gid)
    if st.st_mode & 0o7077 and not _has_acl(path):
        os.chmod(path, 0o700)
    return path


_ACL_XATTR = "system.posix_acl_access"


def _has_acl(path: Path) -> bool:
    try:
        return len(os.getxattr(path, _ACL_XATTR)) > 4 + 3 * 8
    except OSError:
        return False


def grant_traverse(path: Path, accounts: list[str]) -> None:
    """Let the Unix ``accounts`` pass through the folder ``path`` (search, not list or read), nobody else: a
    POSIX ACL ``u:<account>:--x`` on a 0700 folder. Where the file system has no ACLs the folder becomes 0711
    (everyone may pass through, nobody may list; everything inside is private on its own)."""
    uids = sorted({pwd.getpwnam(a).pw_uid for a in accounts} - {os.geteuid()})
    path = Path(path)
    if not uids:
        return
    undefined = 0xFFFFFFFF
    try:
        current = os.getxattr(path, _ACL_XATTR)
    except OSError:
        current = b""
    # keep the accounts granted earlier (another node of the same run folder)
    named = set(uids)
    if current[:4] == struct.pack("<I", 2):
        for i in range(4, len(current), 8):
            tag, _perm, ident = struct.unpack("<HHI", current[i:i + 8])
            if tag == 0x02:
                named.add(ident)
    entries = [(0x01, 7, undefined)] + [(0x02, 1, uid) for uid in sorted(named)] + [
        (0x04, 0, undefined), (0x10, 1, undefined), (0x20, 0, undefined)]
    data = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    if data == current:
        return
    try:
        os.setxattr(path, _ACL_XATTR, data)
    except OSError:
        os.chmod(path, 0o711)


def service_account(name: str) -> str | None:
    """The Unix account ``name`` a server runs as when the harness runs as root and the account exists (the Debian
    packages create ``redis``, ``postgres``, ``clickhouse``); None otherwise (the server runs as the harness's
    user)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        return None
    return name


def can_enter(account: str, folder: Path) -> bool:
    """True if ``account`` can reach ``folder`` (every folder on the way lets it pass)."""
    folder = Path(folder)
    while not folder.exists():
        folder = folder.parent
    entry = pwd.getpwnam(account)
    res = subprocess.run(["test", "-x", str(folder)], user=entry.pw_uid, group=entry.pw_gid, extra_groups=[],
                         env={"PATH": "/usr/bin:/bin"}, capture_output=True)
    return res.returncode == 0


def account_for(name: str, run_dir: Path) -> str | None:
    """The account a server of ``run_dir`` runs as: ``name`` when it exists, we are root and it can reach the run
    folder's parent (the run folder itself is opened to it with :func:`grant_traverse`); else None (the harness's
    user). A run folder inside a folder only root may enter (pytest's ``/tmp/pytest-of-root``) keeps its servers
    as root."""
    account = service_account(name)
    if account is None:
        return None
    return account if can_enter(account, Path(run_dir).resolve().parent) else None
