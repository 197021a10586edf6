"""The ``tradedrill`` command line: the local stack (up/status/down), and the commands each area adds.

Areas register their own click groups here (mt5sim, faults, drill, check, ...); an area whose module is absent
or fails to import is reported, not fatal, so one broken area never hides the others.
"""
from __future__ import annotations

import importlib
import os
import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Chaos drills and verification for a high-availability MT5 trading stack."""


# (module, attribute) of every command or group an area contributes
_AREA_COMMANDS = [
    ("tradedrill.stackcli", "up"),
    ("tradedrill.stackcli", "status"),
    ("tradedrill.stackcli", "down"),
    ("reference.mt5.simcli", "mt5sim"),
    ("reference.cli", "engine"),
    ("faults.cli", "faults"),
    ("scenarios.cli", "drill"),
    ("scenarios.cli", "scenarios"),
    ("scenarios.cli", "check"),
    ("scenarios.verifycli", "replay"),
    ("scenarios.verifycli", "soak"),
    ("scenarios.loadcli", "load_spec"),
]


def _private_files() -> None:
    """Everything the harness writes (run folders, histories, ledgers, reports, state files) is the user's own:
    0700 folders and 0600 files, whatever the shell's umask."""
    os.umask(0o077)


def _register() -> None:
    for module_name, attr in _AREA_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that area does not exist yet
            raise
        command = getattr(module, attr, None)
        if command is not None:
            main.add_command(command)


_private_files()
_register()

if __name__ == "__main__":
    sys.exit(main())
