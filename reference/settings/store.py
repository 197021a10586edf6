"""JSON settings files with atomic writes, rotating backups and a fallback to the newest valid backup (CFG-1, CFG-2;
EA-BR 3.4 and 4.3).

Layout of a settings folder (EA-BR 3.4: ``./config/``), for a store of ``config/ea.json``::

    config/ea.json                   the settings (0600), replaced atomically on every save
    config/ea.json.000041.bak        the last ``backups_kept`` (3) saved versions, newest = highest number; the newest
    config/ea.json.000040.bak        is the same text as ea.json, so a damaged ea.json loses no saved change
    config/ea.json.000039.bak
    config/ea.json.20261201T053700123456Z.damaged
                                     every file a load found damaged, kept as evidence under the UTC time it was
                                     found (never read); the newest ``damaged_kept`` (10) of them
    config/.ea.json.lock             the writers' flock
    config/.ea.json.<pid>.<hex>.tmp  left only by a writer killed mid-write: never read, removed by the next save

Every save validates what it writes (it must load again), refuses more than ``max_bytes`` (10 KB), writes the file
and then its backup (each: temp file, fsync, rename, fsync of the folder) and prunes the oldest backups. A load reads
at most ``max_bytes + 1`` bytes, validates them against the schema (``reference.settings.schema``), and when the file
is missing, truncated, not JSON, of a wrong type, out of range or over the cap, loads the newest valid backup, says so
in one line (``Loaded.message``, also passed to ``on_notice``), keeps the damaged file as
``<name>.<UTC time>.damaged`` (every one, up to ``damaged_kept``: a second damage does not overwrite the evidence of
the first) and rewrites the file from that backup.

Why our own: no maintained library keeps validated, rotated JSON backups with a fallback; the atomic write is
``reference.settings.durable`` (see why there).
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic

from pydantic import ValidationError

from . import durable
from .errors import SettingsError
from .policy import ConfigPolicy
from .schema import M, describe_validation_error, dump_settings, parse_settings

log = logging.getLogger("reference.settings")


@dataclass(frozen=True)
class Loaded(Generic[M]):
    """What a load found: the ``settings``, the file they came from (``source``), and when that is not the settings
    file itself, ``message``: one line that says what was wrong and which backup was loaded (None otherwise)."""

    settings: M
    source: Path | None
    message: str | None = None
    problems: tuple[str, ...] = ()   # one line per file that could not be used, newest first

    @property
    def fell_back(self) -> bool:
        """True when the settings did not come from the file itself (a backup, or the defaults)."""
        return self.message is not None


class SettingsStore(Generic[M]):
    """One JSON settings file of schema ``model`` (a pydantic model whose fields all have defaults) at ``path``,
    kept under ``policy`` (:class:`ConfigPolicy`: 10 KB cap and 3 backups by default, CFG-1). ``on_notice`` gets
    the one-line message of every fallback (default: a warning on the ``reference.settings`` logger)."""

    def __init__(self, path: Path | str, model: type[M], policy: ConfigPolicy | None = None, *,
                 on_notice: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.model = model
        self.policy = policy or ConfigPolicy()
        self.on_notice = on_notice or log.warning
        self._backup = re.compile(rf"{re.escape(self.path.name)}\.([0-9]{{1,12}})\.bak")
        self._damaged = re.compile(rf"{re.escape(self.path.name)}\.[0-9]{{8}}T[0-9]{{12}}Z(?:-[0-9]+)?\.damaged")
        self._temp = re.compile(rf"\.{re.escape(self.path.name)}(?:\.[0-9]{{1,12}}\.bak)?\.[0-9]+\.[0-9a-f]+\.tmp")

    # -- where ------------------------------------------------------------------------------------------------
    @property
    def damaged_path(self) -> Path:
        """The newest damaged copy kept (``<name>.<UTC time>.damaged``; ``<name>.damaged`` when none is kept, the
        name older versions used)."""
        copies = self.damaged_copies()
        return copies[0] if copies else self.path.with_name(self.path.name + ".damaged")

    def damaged_copies(self) -> list[Path]:
        """Every damaged copy kept, newest first (an older version's ``<name>.damaged`` last)."""
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        stamped = sorted((n for n in names if self._damaged.fullmatch(n)), reverse=True)
        legacy = [self.path.name + ".damaged"] if self.path.name + ".damaged" in names else []
        return [self.path.parent / n for n in stamped + legacy]

    def _new_damaged_path(self) -> Path:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.path.with_name(f"{self.path.name}.{stamp}.damaged")
        n = 1
        while path.exists() or path.is_symlink():   # two damages in one microsecond: never overwrite evidence
            path = self.path.with_name(f"{self.path.name}.{stamp}-{n}.damaged")
            n += 1
        return path

    def backup_path(self, generation: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{generation:06d}.bak")

    def backups(self) -> list[Path]:
        """The backup files, newest first."""
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        found = [(int(m.group(1)), name) for name in names if (m := self._backup.fullmatch(name))]
        return [self.path.parent / name for _, name in sorted(found, reverse=True)]

    def _lock(self) -> durable.FolderLock:
        return durable.FolderLock(self.path.parent, self.path.name)

    # -- reading ----------------------------------------------------------------------------------------------
    def _read(self, path: Path) -> M:
        """The settings in ``path``; SettingsError (one line naming the file) when missing, unreadable or invalid."""
        cap = self.policy.max_bytes
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size > cap:  # never read a huge file whole
                    raise SettingsError(f"{path} is {size:,} bytes, over the {cap:,}-byte cap (CFG-1)",
                                        source=str(path))
                data = fh.read(cap + 1)
        except FileNotFoundError:
            raise SettingsError(f"{path} is missing", source=str(path)) from None
        except IsADirectoryError:
            raise SettingsError(f"{path} is a folder, not a settings file", source=str(path)) from None
        except OSError as exc:
            raise SettingsError(f"{path} cannot be read: {exc.strerror or exc}", source=str(path)) from None
        return parse_settings(data, self.model, max_bytes=cap, source=str(path))

    def load(self) -> Loaded[M]:
        """Load the settings (CFG-2). The file itself when it is valid; else the newest valid backup, with
        ``message`` saying what was wrong (and, by policy, the file rewritten from that backup and the damaged one
        kept as ``<name>.damaged``); the schema's defaults when there is neither a file nor a backup. Raises
        :class:`SettingsError` (one line) when files exist but none of them is valid."""
        try:
            return Loaded(self._read(self.path), self.path)
        except SettingsError as err:
            first = err
        backups = self.backups()
        if not backups and not self.path.exists():
            message = f"{self.path} is missing and has no backup: using the defaults"
            return Loaded(self.model(), None, message, (str(first),))
        problems = [str(first)]
        for backup in backups:
            try:
                settings = self._read(backup)
            except SettingsError as err:
                problems.append(str(err))
                continue
            saved = _dt.datetime.fromtimestamp(backup.stat().st_mtime, _dt.timezone.utc)
            skipped = f" (skipped {len(problems) - 1} damaged newer backup{'s' if len(problems) > 2 else ''})" \
                if len(problems) > 1 else ""
            message = (f"{first}; loaded the newest valid backup {backup.name}, saved "
                       f"{saved:%Y-%m-%d %H:%M:%S} UTC{skipped}")
            if self.policy.repair:
                message += self._repair(backup)
            self.on_notice(message)
            return Loaded(settings, backup, message, tuple(problems))
        raise SettingsError(
            f"{first}, and none of its {len(backups)} backup(s) is valid"
            + (f" ({'; '.join(problems[1:])})" if backups else "")
            + f": fix {self.path.name} or delete it and its backups to start from the defaults",
            source=str(self.path))

    def _repair(self, backup: Path) -> str:
        """Put the backup's text back as the settings file, the damaged file kept as evidence. Returns the end of
        the notice ("; ..."); a repair that cannot write (read-only folder, disk full) is said, not raised."""
        try:
            with self._lock():
                try:
                    self._read(self.path)
                    return "; another writer has since saved a valid file"
                except SettingsError:
                    pass
                data = backup.read_bytes()
                kept = ""
                if self.policy.keep_damaged and (self.path.exists() or self.path.is_symlink()):
                    evidence = self._new_damaged_path()
                    os.replace(self.path, evidence)
                    kept = f", the damaged file kept as {evidence.name}"
                    for old in self.damaged_copies()[self.policy.damaged_kept:]:
                        old.unlink(missing_ok=True)   # bounded: the oldest evidence beyond damaged_kept
                durable.write_atomic(self.path, data)
            return f"; {self.path.name} rewritten from it{kept}"
        except OSError as exc:
            return f"; {self.path.name} could not be rewritten ({exc.strerror or exc})"

    # -- writing ----------------------------------------------------------------------------------------------
    def save(self, settings: M) -> Path:
        """Write ``settings`` (CFG-1): validated, at most ``max_bytes``, atomically and durably, then as the newest
        backup; backups beyond ``backups_kept`` are deleted and temporary files of killed writers removed. Returns
        the backup path. Raises SettingsError (nothing written) when the settings are invalid or too large, OSError
        when the disk refuses (the previous file and backups stay)."""
        if not isinstance(settings, self.model):
            raise SettingsError(f"{self.path}: expected {self.model.__name__} settings, not "
                                f"{type(settings).__name__}", source=str(self.path))
        data = dump_settings(settings)
        cap = self.policy.max_bytes
        if len(data) > cap:
            raise SettingsError(f"{self.path}: these settings are {len(data):,} bytes as JSON, over the {cap:,}-byte "
                                f"cap (CFG-1); nothing was written", source=str(self.path))
        parse_settings(data, self.model, max_bytes=cap, source=str(self.path))  # what we write must load again
        if not self.path.parent.is_dir():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            durable.fsync_dir(self.path.parent.parent)   # the new folder's own name, durably
        with self._lock():
            for entry in os.listdir(self.path.parent):
                if self._temp.fullmatch(entry):
                    (self.path.parent / entry).unlink(missing_ok=True)
            backups = self.backups()
            generation = (int(self._backup.fullmatch(backups[0].name).group(1)) + 1) if backups else 1
            durable.write_atomic(self.path, data)
            backup = durable.write_atomic(self.backup_path(generation), data)
            for old in self.backups()[self.policy.backups_kept:]:
                old.unlink(missing_ok=True)
            durable.fsync_dir(self.path.parent)
        return backup

    def change(self, **changes: Any) -> M:
        """Apply ``changes`` (field=value) to the current settings, validate, and save at once (CFG-1: saved on
        every change). Returns the new settings; raises SettingsError naming the field, nothing written."""
        current = self.load().settings
        try:
            updated = self.model.model_validate({**current.model_dump(), **changes})
        except ValidationError as err:
            raise describe_validation_error(err, str(self.path)) from None
        self.save(updated)
        return updated
