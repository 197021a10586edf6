"""Broker logins (login, password, server) in PostgreSQL, encrypted at rest (PG-1; EA-BR 2.1 "broker credentials:
PostgreSQL, permanent").

Each login is sealed with AES-256-GCM (``cryptography``'s ``AESGCM``; a fresh 96-bit nonce per write) before it
leaves the process; PostgreSQL, its WAL, its log and every ``pg_dump`` hold only ciphertext. The broker's name is
bound to its row as associated data, so a sealed login copied onto another broker's row does not open. Table::

    broker_logins(name text primary key, key_id text, sealed bytea, updated_at timestamptz)

``key_id`` is a one-way fingerprint of the key (not the key): a row sealed with another key says so by name instead
of failing with "bad tag".

The key is 32 random bytes, base64url on one line, in a 0600 file of the run/state folder (default
``<state_dir>/secrets/broker-logins.key``, see :func:`default_key_path`), made once with ``O_EXCL`` semantics.
:class:`LoginKey` refuses a key file that is a symlink, belongs to another user or that group/others may read, like
ssh does. The key is never logged, never in an exception message, never in ``repr``; it is never sent to PostgreSQL.
Losing the key file loses the logins (the dumps cannot open them either): back it up apart from the dumps.

How the engine uses it: two ``EngineConfig`` fields, ``credentials_dsn`` (a libpq string naming a ``passfile``,
never the password) and ``credentials_key_file``; ``engine run`` calls :func:`apply_broker_logins` once at start,
which fills ``login``, ``password`` and ``server`` of every broker whose ``login`` is None from this table, so a
broker entry in ``engine.json`` needs only ``name``, ``factory`` and ``params``. What it returns (broker names, key
id, the time of the read) is what the engine logs; never the logins.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import durable
from .errors import CredentialsError

KEY_BYTES = 32                      # AES-256
NONCE_BYTES = 12                    # GCM's 96-bit nonce
SEAL_VERSION = b"\x01"
KEY_FILE_NAME = "broker-logins.key"
TABLE = "broker_logins"
MAX_TEXT = 4096                     # characters of a password or server name
BROKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_AAD = b"tradedrill broker login v1\x00"
_KEY_ID = b"tradedrill broker-login key id\x00"


def default_key_path(state_dir: Path | str) -> Path:
    """Where the key lives in a run/state folder: ``<state_dir>/secrets/broker-logins.key``."""
    return Path(state_dir) / "secrets" / KEY_FILE_NAME


@dataclass(frozen=True)
class BrokerLogin:
    """One broker account: ``login`` (the MT5 account number, 1 .. 2**63-1), ``password`` (left out of ``repr``),
    ``server`` (the broker's trade server name). Unpacks as ``login, password, server``."""

    login: int
    password: str = field(repr=False)
    server: str

    def __post_init__(self) -> None:
        if not isinstance(self.login, int) or isinstance(self.login, bool) or not 0 < self.login < 2**63:
            raise CredentialsError(f"a broker login is an account number from 1 to 2**63-1, not "
                                   f"{type(self.login).__name__}", field="login")
        for name in ("password", "server"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > MAX_TEXT:
                raise CredentialsError(f"a broker {name} is text of at most {MAX_TEXT} characters", field=name)

    def __iter__(self) -> Iterator:
        return iter((self.login, self.password, self.server))


class LoginKey:
    """The encryption key of the broker logins, read from (or made in) its 0600 file. ``repr`` shows the path and
    the key id, never the key."""

    def __init__(self, key: bytes, path: Path | None = None):
        if len(key) != KEY_BYTES:
            raise CredentialsError(f"a broker-login key is {KEY_BYTES} bytes")
        self._key = bytes(key)
        self.path = path

    def __repr__(self) -> str:
        return f"LoginKey(path={str(self.path)!r}, key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        """A one-way fingerprint of the key (16 hex digits): names the key in rows and messages, reveals nothing."""
        return hashlib.sha256(_KEY_ID + self._key).hexdigest()[:16]

    @classmethod
    def generate(cls) -> "LoginKey":
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def ensure(cls, path: Path | str) -> "LoginKey":
        """The key in ``path``, made first (32 random bytes, 0600, in a 0700 folder) when the file does not exist.
        Two processes racing here end up with the same key."""
        path = Path(path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists() and not path.is_symlink():
            fresh = secrets.token_bytes(KEY_BYTES)
            durable.create_exclusive(path, base64.urlsafe_b64encode(fresh) + b"\n", mode=0o600)
        return cls.load(path)

    @classmethod
    def load(cls, path: Path | str) -> "LoginKey":
        """Read the key file. CredentialsError (one line, never the key) when it is missing, a symlink, not ours,
        readable by group or others, or does not hold a key."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise CredentialsError(f"the broker-login key file {path} does not exist: without it the stored logins "
                                   f"cannot be read (restore it from its backup)") from None
        except OSError as exc:
            raise CredentialsError(f"the broker-login key file {path} cannot be opened "
                                   f"({exc.strerror or exc}; a symlink is refused)") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CredentialsError(f"the broker-login key file {path} is not a regular file")
            if st.st_uid != os.geteuid():
                raise CredentialsError(f"the broker-login key file {path} belongs to uid {st.st_uid}, not to this "
                                       f"user ({os.geteuid()}); refusing it")
            if st.st_mode & 0o077:
                raise CredentialsError(f"the broker-login key file {path} has mode {st.st_mode & 0o777:04o}; it "
                                       f"must be readable by its owner only: chmod 600 {path}")
            raw = os.read(fd, 256)
        finally:
            os.close(fd)
        try:
            key = base64.urlsafe_b64decode(raw.strip())
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            raise CredentialsError(f"the broker-login key file {path} does not hold a key ({KEY_BYTES} bytes, "
                                   f"base64url on one line)")
        return cls(key, path)

    # -- sealing ------------------------------------------------------------------------------------------------
    def seal(self, broker: str, login: BrokerLogin) -> bytes:
        """``login`` encrypted for the row of ``broker``: version byte, nonce, AES-256-GCM ciphertext and tag."""
        check_broker_name(broker)
        plain = json.dumps({"login": login.login, "password": login.password, "server": login.server},
                           ensure_ascii=True).encode("ascii")
        nonce = secrets.token_bytes(NONCE_BYTES)
        return SEAL_VERSION + nonce + AESGCM(self._key).encrypt(nonce, plain, _AAD + broker.encode())

    def unseal(self, broker: str, sealed: bytes) -> BrokerLogin:
        """The login sealed for ``broker``. CredentialsError when it was sealed with another key, for another
        broker, or was altered."""
        check_broker_name(broker)
        sealed = bytes(sealed)
        if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != SEAL_VERSION:
            raise CredentialsError(f"the stored login of broker {broker!r} is not a sealed login (damaged row?)")
        nonce, body = sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:]
        try:
            plain = AESGCM(self._key).decrypt(nonce, body, _AAD + broker.encode())
        except InvalidTag:
            raise CredentialsError(f"the stored login of broker {broker!r} does not open with key {self.key_id}: "
                                   f"it was sealed with another key, for another broker, or altered") from None
        doc = json.loads(plain)
        return BrokerLogin(doc["login"], doc["password"], doc["server"])


def check_broker_name(name: str) -> str:
    if not isinstance(name, str) or not BROKER_NAME.fullmatch(name):
        raise CredentialsError(f"broker name {name!r:.70}: use 1-64 letters, digits, '.', '_' or '-' (starting with "
                               f"a letter or digit)", field="name")
    return name


def _db_error(exc: Exception, doing: str) -> CredentialsError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CredentialsError(f"cannot {doing} in the credentials database: {first}")


class BrokerLoginStore:
    """Broker logins in the PostgreSQL database at ``dsn`` (a libpq connection string; name the password in a
    ``passfile``, never inline), sealed with ``key`` (PG-1). Every method opens its own short connection."""

    def __init__(self, dsn: str, key: LoginKey, *, connect_timeout_s: float = 2.0):
        self.dsn = dsn
        self.key = key
        self.connect_timeout_s = connect_timeout_s

    def __repr__(self) -> str:
        return f"BrokerLoginStore(key={self.key!r})"

    def _connect(self):
        import psycopg

        return psycopg.connect(self.dsn, connect_timeout=max(1, round(self.connect_timeout_s)))

    def ensure_schema(self) -> None:
        """Create the table when it does not exist."""
        import psycopg

        try:
            with self._connect() as conn:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (name text PRIMARY KEY, key_id text NOT NULL, "
                             f"sealed bytea NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())")
        except psycopg.Error as exc:
            raise _db_error(exc, "create the broker_logins table") from None

    def put(self, name: str, login: BrokerLogin) -> None:
        """Store (or replace) the login of broker ``name``, sealed; committed when this returns."""
        self.put_many({name: login})

    def put_many(self, logins: Mapping[str, BrokerLogin]) -> None:
        """Store several logins in one transaction."""
        import psycopg

        rows = [(check_broker_name(name), self.key.key_id, self.key.seal(name, login))
                for name, login in logins.items()]
        try:
            with self._connect() as conn, conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {TABLE} (name, key_id, sealed) VALUES (%s, %s, %s) "
                                f"ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, "
                                f"sealed = excluded.sealed, updated_at = now()", rows)
        except psycopg.Error as exc:
            raise _db_error(exc, "store broker logins") from None

    def names(self) -> list[str]:
        import psycopg

        try:
            with self._connect() as conn:
                return [r[0] for r in conn.execute(f"SELECT name FROM {TABLE} ORDER BY name")]
        except psycopg.Error as exc:
            raise _db_error(exc, "list broker logins") from None

    def get_many(self, names: Iterable[str] | None = None) -> dict[str, BrokerLogin]:
        """The logins of ``names`` (all when None), decrypted. CredentialsError when one is missing or does not
        open with this key (the message names the broker and the key id)."""
        import psycopg

        wanted = None if names is None else [check_broker_name(n) for n in names]
        try:
            with self._connect() as conn:
                if wanted is None:
                    rows = conn.execute(f"SELECT name, key_id, sealed FROM {TABLE} ORDER BY name").fetchall()
                else:
                    rows = conn.execute(f"SELECT name, key_id, sealed FROM {TABLE} WHERE name = ANY(%s)",
                                        (wanted,)).fetchall()
        except psycopg.Error as exc:
            raise _db_error(exc, "read broker logins") from None
        found = {}
        for name, key_id, sealed in rows:
            if key_id != self.key.key_id:
                raise CredentialsError(f"the login of broker {name!r} was sealed with key {key_id}, but "
                                       f"{self.key.path or 'the key given'} is key {self.key.key_id}: use the key "
                                       f"file that stored it")
            found[name] = self.key.unseal(name, sealed)
        missing = [n for n in (wanted or []) if n not in found]
        if missing:
            raise CredentialsError(f"no stored login for broker(s) {', '.join(missing)}; store them first "
                                   f"(BrokerLoginStore.put)")
        return found

    def get(self, name: str) -> BrokerLogin:
        return self.get_many([name])[name]

    def remove(self, name: str) -> bool:
        """Delete the login of ``name``; True when there was one."""
        import psycopg

        try:
            with self._connect() as conn:
                return conn.execute(f"DELETE FROM {TABLE} WHERE name = %s", (check_broker_name(name),)).rowcount > 0
        except psycopg.Error as exc:
            raise _db_error(exc, "delete a broker login") from None


def read_broker_logins(dsn: str, key_file: Path | str, names: Iterable[str] | None = None
                       ) -> dict[str, BrokerLogin]:
    """What the engine calls at start (PG-1): ``{broker name: BrokerLogin(login, password, server)}`` for ``names``
    (all stored logins when None), read from the database at ``dsn`` and decrypted with the key in ``key_file``.
    Raises CredentialsError (one line, no secret in it) when the key file is unsafe or missing, the database cannot
    be reached, a name has no login, or a login does not open."""
    return BrokerLoginStore(dsn, LoginKey.load(key_file)).get_many(names)


def apply_broker_logins(config) -> dict:
    """Fill the logins of ``config``'s brokers (an ``EngineConfig``) whose ``login`` is None from PostgreSQL
    (``config.credentials_dsn``, key in ``config.credentials_key_file``); PG-1. Returns what may be logged: the
    brokers filled, the key id and the wall/monotonic time of the read (no secret). Does nothing (``brokers`` [])
    when ``credentials_dsn`` is empty. Raises CredentialsError (one line, no secret) when a login cannot be read."""
    import dataclasses
    import time

    if not config.credentials_dsn:
        return {"brokers": [], "key_id": None}
    if not config.credentials_key_file:
        raise CredentialsError("credentials_dsn is set but credentials_key_file is not: the stored logins cannot "
                               "be opened without their key file", field="credentials_key_file")
    brokers = config.broker_configs()
    wanted = [b.name for b in brokers if b.login is None]
    if not wanted:
        return {"brokers": [], "key_id": None}
    key = LoginKey.load(config.credentials_key_file)
    logins = BrokerLoginStore(config.credentials_dsn, key).get_many(wanted)
    config.brokers = [dataclasses.replace(b, login=logins[b.name].login, password=logins[b.name].password,
                                          server=logins[b.name].server) if b.name in logins else b
                      for b in brokers]
    return {"brokers": wanted, "key_id": key.key_id, "read_ts": round(time.time(), 6),
            "read_mono": round(time.monotonic(), 6)}
