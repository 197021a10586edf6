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


def load_user_settings(config) -> tuple[EngineUserSettings | None, dict]:
    """The engine's user settings (CFG-1/2) from ``<config.user_settings_dir>/engine.json`` (a relative folder is
    inside ``config.state_dir``), loaded once at start: the file, else its newest valid backup (the file rewritten
    from it, the damaged one kept as ``engine.json.<UTC time>.damaged``), and what may be logged about it. The settings that
    are also engine options (``filling``, ``deviation_points``, ``max_volume``) are applied to ``config``.
    ``(None, {})`` when ``user_settings_dir`` is empty. Raises SettingsError (one line) when neither the file nor a
    backup is valid."""
    import time

    folder = getattr(config, "user_settings_dir", "")
    if not folder:
        return None, {}
    path = Path(folder)
    if not path.is_absolute():
        path = Path(config.state_dir) / path
    store = engine_settings(path)
    started = time.monotonic()
    notices: list[str] = []
    store.on_notice = notices.append
    loaded = store.load()
    load_s = time.monotonic() - started
    settings = loaded.settings
    for name in ("filling", "deviation_points", "max_volume"):
        setattr(config, name, getattr(settings, name))
    info = {"file": str(store.path), "source": str(loaded.source) if loaded.source else None,
            "fell_back": loaded.fell_back, "message": loaded.message, "problems": list(loaded.problems),
            "load_s": round(load_s, 6), "backups": [p.name for p in store.backups()],
            "damaged_kept": bool(store.damaged_copies()), "damaged_copies": len(store.damaged_copies())}
    return settings, info


__all__ = [
    "BackupError", "BrokerLogin", "BrokerLoginStore", "ConfigPolicy", "CredentialsError", "DamagedDump", "Dump",
    "DumpPolicy", "DumpSchedule", "EASettings", "EngineUserSettings", "Loaded", "LoginKey", "PgDumps", "Restored",
    "SettingsError", "SettingsStore", "default_key_path", "dump_settings", "ea_settings", "engine_settings",
    "load_user_settings", "parse_settings", "read_broker_logins",
]
