"""The one error type of the settings package: a sentence a user can act on, on one line (never a traceback)."""
from __future__ import annotations


class SettingsError(ValueError):
    """A settings file, policy or credential cannot be used. ``str(err)`` is one line that names the file and the
    field (``field``: the dotted field name, or None when the whole file is at fault) and says what to do."""

    def __init__(self, message: str, *, field: str | None = None, source: str | None = None):
        super().__init__(" ".join(str(message).split()) if "\n" in str(message) or "\r" in str(message)
                         else str(message))
        self.field = field
        self.source = source


class CredentialsError(SettingsError):
    """Broker logins cannot be stored, read or decrypted, or the key file is unsafe. The message never holds a
    password or the key."""


class BackupError(SettingsError):
    """A pg_dump backup or a restore failed; the message names the dump file and what the tool said."""
