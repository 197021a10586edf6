"""Small filesystem helpers shared by the engine's store (``reference/store``) and the settings (``reference/settings``)."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """fsync a folder, so renames and new names in it are on disk (raises OSError like ``os.fsync``)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
