"""The numbers of the settings and credentials stores: every interval, count and size, with the design documents'
value as default and the requirement ID beside it (CFG-1, CFG-2, PG-1).

Both policies are frozen dataclasses; ``from_mapping`` builds one from a JSON/TOML table and raises
:class:`~reference.settings.errors.SettingsError` naming the key when a value is unknown, of the wrong type or out
of range (a typo must not fall back to a default silently).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import SettingsError

KB = 1024


@dataclass(frozen=True)
class ConfigPolicy:
    """How a JSON settings file is kept (EA-BR 3.4, 4.3)."""

    max_bytes: int = 10 * KB          # CFG-1: file size cap, 10 KB
    backups_kept: int = 3             # CFG-1: last 3 backups kept
    load_target_s: float = 1.0        # CFG-2: load under 1 s (benchmarked in benchmarks/bench_settings.py, never a
                                      # timed test)
    repair: bool = True               # on a fallback, rewrite the file from the backup it loaded
    keep_damaged: bool = True         # ... and keep the damaged file beside it (<name>.<UTC time>.damaged) as evidence
    damaged_kept: int = 10            # every damaged copy is kept, timestamped; the oldest beyond this many deleted

    def __post_init__(self) -> None:
        _check(self, "max_bytes", int, 2, 16 * 1024 * KB)
        _check(self, "backups_kept", int, 1, 1000)
        _check(self, "load_target_s", float, 0.0, 3600.0, low_open=True)
        _check(self, "repair", bool)
        _check(self, "keep_damaged", bool)
        _check(self, "damaged_kept", int, 1, 1000)

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> "ConfigPolicy":
        return _from_mapping(cls, doc, "config policy")


@dataclass(frozen=True)
class DumpPolicy:
    """How the PostgreSQL credentials database is backed up (EA-BR 3.5, 4.5).

    EA-BR 3.5 says both "keep last 14 days" and "keep last 14 backups"; with a dump every 6 h those are 56 and 14
    dumps. REQUIREMENTS.md (PG-1) takes "14 kept", the default here; ``dumps_kept = 56`` gives the 14 days."""

    interval_s: float = 6 * 3600.0    # PG-1: pg_dump every 6 h
    dumps_kept: int = 14              # PG-1: 14 kept (rotation)
    gzip_level: int = 6               # PG-1: gzip (EA-BR 3.5 "use GZIP"); 6 is gzip's own default
    restore_target_s: float = 5.0     # PG-1: restore under 5 s (benchmarked, never a timed test)
    retry_s: float = 300.0            # a failed scheduled dump is tried again this much later (not in the documents)
    dump_timeout_s: float = 600.0     # pg_dump / psql are stopped (by their own handle) after this long
    restore_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        _check(self, "interval_s", float, 0.0, 366 * 86400.0, low_open=True)
        _check(self, "dumps_kept", int, 1, 100_000)
        _check(self, "gzip_level", int, 1, 9)
        _check(self, "restore_target_s", float, 0.0, 86400.0, low_open=True)
        _check(self, "retry_s", float, 0.0, 86400.0, low_open=True)
        _check(self, "dump_timeout_s", float, 0.0, 86400.0, low_open=True)
        _check(self, "restore_timeout_s", float, 0.0, 86400.0, low_open=True)

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> "DumpPolicy":
        return _from_mapping(cls, doc, "dump policy")


def _check(obj: Any, name: str, kind: type, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> None:
    value = getattr(obj, name)
    if kind is bool:
        ok = isinstance(value, bool)
        want = "true or false"
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        want = f"an integer from {low:g} to {high:g}"
    else:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
              and (low < value if low_open else low <= value) and value <= high)
        want = f"a number greater than {low:g} and at most {high:g}"
    if not ok:
        raise SettingsError(f"{type(obj).__name__}.{name} = {value!r:.60}: must be {want}", field=name)


def _from_mapping(cls, doc: Mapping[str, Any], what: str):
    if not isinstance(doc, Mapping):
        raise SettingsError(f"the {what} must be a table of settings, not {type(doc).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in doc if k not in known)
    if unknown:
        raise SettingsError(f"the {what} has no setting {unknown[0]!r:.60}; it knows {', '.join(sorted(known))}",
                            field=unknown[0])
    # an int where a float is wanted is fine (JSON/TOML write 21600 for 21600.0)
    values = {k: (float(v) if isinstance(v, int) and not isinstance(v, bool)
                  and isinstance(getattr(cls, k), float) else v) for k, v in doc.items()}
    return cls(**values)
