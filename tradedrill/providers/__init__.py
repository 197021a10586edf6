"""Providers: what turns a declarative topology into something a drill can hurt.

A drill, its faults and its checkers see one interface (``tradedrill.providers.base``): the running topology
(``Stack``) and its nodes (``NodeHandle``). Which provider realises it is a name:

- ``local``: every node an OS process on its own loopback address (``tradedrill.local.LocalStack``);
- ``docker``: every node a container on a user-defined network, one address and DNS name each
  (``tradedrill.providers.docker.DockerStack``);
- ``external``: a deployment somebody else runs, reached at the addresses of a topology file, hurt only through
  what reaches it (its Toxiproxy, its brokers' admin endpoints) (``tradedrill.providers.external``).

``build(name, topology, run_dir, ...)`` makes one; the heavy ones are imported only when asked for.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from tradedrill.providers.base import CAPABILITIES, NodeHandle, Stack, missing_capabilities

__all__ = ["CAPABILITIES", "NodeHandle", "PROVIDERS", "Stack", "build", "missing_capabilities", "stack_class"]

# name -> (module, class): imported on first use, so the local provider never loads docker or testcontainers
PROVIDERS: dict[str, tuple[str, str]] = {
    "local": ("tradedrill.local", "LocalStack"),
    "docker": ("tradedrill.providers.docker", "DockerStack"),
    "external": ("tradedrill.providers.external", "ExternalStack"),
}


class UnknownProvider(ValueError):
    pass


def stack_class(name: str) -> type:
    try:
        module, attr = PROVIDERS[name]
    except KeyError:
        raise UnknownProvider(f"unknown provider {name!r}; providers: {', '.join(PROVIDERS)}") from None
    return getattr(importlib.import_module(module), attr)


def build(name: str, topology: Any, run_dir: Path | str, options: dict[str, dict] | None = None,
          before_engines: Callable[[Any], None] | None = None, **kwargs: Any) -> Stack:
    """The stack of provider ``name`` for ``topology`` (not started: call ``up()``)."""
    return stack_class(name)(topology, run_dir, options=options, before_engines=before_engines, **kwargs)
