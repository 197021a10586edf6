"""Settings and credentials of the reference stack (issue 13, parts 5 and 6).

- JSON settings of the EA and the engine's user settings (CFG-1, CFG-2): :class:`SettingsStore` with the schemas
  :class:`EASettings` and :class:`EngineUserSettings` (``store.py``, ``schema.py``), atomic writes in
  ``durable.py``.
- Broker logins in PostgreSQL, encrypted at rest (PG-1): :class:`BrokerLoginStore`, :class:`LoginKey` and
  :func:`read_broker_logins` for the engine (``logins.py``); gzip ``pg_dump`` backups on a schedule and a
  transaction-safe restore: :class:`PgDumps`, :class:`DumpSchedule` (``pgdumps.py``).
- Every interval, count and size: :class:`ConfigPolicy`, :class:`DumpPolicy` (``policy.py``).

Errors a user can meet are one :class:`SettingsError` line (subclasses :class:`CredentialsError`,
:class:`BackupError`).
"""
from __future__ import annotations

from pathlib import Path

from .errors import BackupError, CredentialsError, SettingsError
from .logins import BrokerLogin, BrokerLoginStore, LoginKey, default_key_path, read_broker_logins
from .pgdumps import DamagedDump, Dump, DumpSchedule, PgDumps, Restored
from .policy import ConfigPolicy, DumpPolicy
from .schema import EASettings, EngineUserSettings, dump_settings, parse_settings
from .store import Loaded, SettingsStore

CONFIG_DIR = "config"   # EA-BR 3.4: "store in ./config/"


def ea_settings(folder: Path | str = CONFIG_DIR, policy: ConfigPolicy | None = None) -> SettingsStore[EASettings]:
    """The EA's settings store: ``<folder>/ea.json``."""
    return SettingsStore(Path(folder) / "ea.json", EASettings, policy)


def engine_settings(folder: Path | str = CONFIG_DIR,
                    policy: ConfigPolicy | None = None) -> SettingsStore[EngineUserSettings]:
    """The engine's user-settings store: ``<folder>/engine.json``."""
    return SettingsStore(Path(folder) / "engine.json", EngineUserSettings, policy)


__all__ = [
    "BackupError", "BrokerLogin", "BrokerLoginStore", "ConfigPolicy", "CredentialsError", "DamagedDump", "Dump",
    "DumpPolicy", "DumpSchedule", "EASettings", "EngineUserSettings", "Loaded", "LoginKey", "PgDumps", "Restored",
    "SettingsError", "SettingsStore", "default_key_path", "dump_settings", "ea_settings", "engine_settings",
    "parse_settings", "read_broker_logins",
]
