"""Broker logins in PostgreSQL for a drill whose topology runs ``postgres`` (PG-1, issue 13).

The brokers get an account password (a simulator config file), the engines get broker entries without a login and
``credentials_dsn`` / ``credentials_key_file``, so each engine reads its broker logins from PostgreSQL at start
(``reference.settings.logins.apply_broker_logins``) and cannot trade without them.

Where the secrets live: the AES key and the simulator's account file sit in a private (0700) folder under /tmp made
for this run, never in the run folder, and removed by :meth:`DrillLogins.close`. Before it is removed,
:meth:`DrillLogins.scan` looks for the key (raw and base64url) and the broker password in every file of the run
folder and writes what it found to ``secrets_scan.json`` (``key_found_in``, ``password_found_in``: file names only;
the brokers' own account state, which holds the password as a broker's server does, is listed apart), the evidence
the ``pg_restore`` checker judges ``secret_leaks`` from.
"""
from __future__ import annotations

import base64
import json
import secrets as _secrets
import shutil
import tempfile
from pathlib import Path

CREDENTIALS_DB = "credentials"
SCAN_FILE = "secrets_scan.json"
DUMPS_DIR = "backup/postgres"   # under the stack folder: dumps hold only ciphertext (reference.settings.pgdumps)
BROKER_STATE = "stack/brokers/"   # the simulators' state dirs (tradedrill.services.mt5sim.state_dir)
SCAN_LIMIT_BYTES = 256 << 20    # a file bigger than this is scanned in its first 256 MB only (said in the scan)


class DrillLogins:
    """The broker logins of one drill: made before the stack starts, stored once PostgreSQL serves, scanned for and
    removed after the run."""

    def __init__(self, topology, stack_dir: Path):
        from reference.settings.logins import KEY_FILE_NAME, LoginKey
        from tradedrill.credentials import StackSecrets, write_private
        from tradedrill.services import engine as engine_svc
        from tradedrill.services import postgres

        self.topology = topology
        self.private = Path(tempfile.mkdtemp(prefix="tradedrill-pglogins-"))   # 0700 by mkdtemp
        self.key_file = self.private / KEY_FILE_NAME
        self.key = LoginKey.ensure(self.key_file)
        self.account = int(topology.settings["mt5.account"])
        self._password = _secrets.token_urlsafe(18)
        self.sim_config = self.private / "mt5-accounts.json"
        write_private(self.sim_config, json.dumps({"accounts": [{"login": self.account, "password": self._password}]}))
        spec = topology.node("postgres")
        stack_secrets = StackSecrets.ensure(stack_dir)
        self.dsn = postgres.dsn(spec, CREDENTIALS_DB, stack_secrets.pgpass(spec.address, spec.port))
        self.admin_dsn = postgres.dsn(spec, "postgres", stack_secrets.pgpass(spec.address, spec.port))
        self.dumps_dir = Path(stack_dir) / DUMPS_DIR
        brokers = sorted(topology.of_kind("mt5"), key=lambda s: (s.role != "broker-primary", s.name))
        entries = []
        self.servers = {}   # broker name -> its trade server (each simulator is named after its node)
        for b in brokers:
            entry = engine_svc.broker_entry(b, topology)
            entry.pop("login", None)   # read from PostgreSQL at start
            entries.append(entry)
            self.servers[entry["name"]] = b.name
        self.broker_names = [e["name"] for e in entries]
        self.engine_overrides = {"brokers": entries, "credentials_dsn": self.dsn,
                                 "credentials_key_file": str(self.key_file)}

    def __repr__(self) -> str:
        return f"DrillLogins(brokers={self.broker_names}, key={self.key!r})"

    def store(self, _stack=None) -> None:
        """Create the credentials database and store every broker's login, sealed (LocalStack's before_engines)."""
        import psycopg

        from reference.settings.logins import BrokerLogin, BrokerLoginStore

        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (CREDENTIALS_DB,)).fetchone():
                admin.execute(f'CREATE DATABASE "{CREDENTIALS_DB}"')
        store = BrokerLoginStore(self.dsn, self.key)
        store.ensure_schema()
        store.put_many({name: BrokerLogin(self.account, self._password, self.servers[name])
                        for name in self.broker_names})

    def verify(self) -> list[str]:
        """The brokers whose stored login opens with the key and is the one the brokers expect."""
        from reference.settings.logins import read_broker_logins

        logins = read_broker_logins(self.dsn, self.key_file, self.broker_names)
        return [n for n, login in logins.items()
                if (login.login, login.password, login.server) == (self.account, self._password, self.servers[n])]

    def scan(self, run_path: Path) -> dict:
        """Look for the key and the password in every file of the run folder; write SCAN_FILE; return it."""
        raw = bytes(self.key._key)   # noqa: SLF001 - the scan needs the bytes it looks for
        needles = {"key": (raw, base64.urlsafe_b64encode(raw).rstrip(b"="), base64.b64encode(raw).rstrip(b"=")),
                   "password": (self._password.encode(),)}
        found: dict[str, list[str]] = {"key": [], "password": []}
        scanned, truncated = 0, []
        run_path = Path(run_path)
        for path in sorted(run_path.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            try:
                with open(path, "rb") as fh:
                    data = fh.read(SCAN_LIMIT_BYTES + 1)
            except OSError:
                continue
            scanned += 1
            if len(data) > SCAN_LIMIT_BYTES:
                truncated.append(str(path.relative_to(run_path)))
            for what, patterns in needles.items():
                if any(p in data for p in patterns):
                    found[what].append(str(path.relative_to(run_path)))
        # the broker simulators' own state (their account table) holds the account password as a real broker's
        # server does: reported apart, not a leak; anywhere else (engine, harness, logs, reports) it is one
        broker_side = [f for f in found["password"] if f.startswith(BROKER_STATE)]
        doc = {"scanned_files": scanned, "key_id": self.key.key_id, "key_found_in": found["key"],
               "password_found_in": [f for f in found["password"] if f not in broker_side],
               "password_in_broker_state": broker_side, "scanned_partly": truncated,
               "key_folder_outside_run": not str(self.private.resolve()).startswith(str(run_path.resolve()))}
        (run_path / SCAN_FILE).write_text(json.dumps(doc, indent=2))
        return doc

    def close(self) -> None:
        shutil.rmtree(self.private, ignore_errors=True)
