"""``tradedrill faults``: heal what a crashed run left, and run the fault proxy as a process.

A wrong option is one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

import click

from faults.core import FaultState, default_state_path, untrusted_state_file


class OptionError(click.ClickException):
    """A wrong option value: one line, exit status 2 (like click's usage errors, without the usage text)."""

    exit_code = 2


@click.group()
def faults() -> None:
    """Fault injection: the fault proxy and clean-up after crashed runs."""


def state_file_problem(path: Path) -> tuple[str | None, dict]:
    """``(None, records)`` for a readable fault state file (or none at all), else ``(what is wrong, the records
    that could still be read from it)``. A file another user owns or can write yields no records at all."""
    untrusted = untrusted_state_file(path)
    if untrusted:
        return f"{untrusted}: its records are ignored", {}
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, {}
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}", {}
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "it is not UTF-8 text", {}
    except json.JSONDecodeError as exc:
        return f"it is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", {}
    if not isinstance(doc, dict):
        return f"it holds a JSON {type(doc).__name__}, not an object of fault kinds", {}
    records: dict[str, list[dict]] = {}
    bad = []
    for kind, entries in doc.items():
        if not isinstance(entries, list):
            bad.append(f"{kind!r} is not a list")
            continue
        good = [e for e in entries if isinstance(e, dict)]
        if len(good) != len(entries):
            bad.append(f"{len(entries) - len(good)} record(s) of {kind!r} are not objects")
        if good:
            records[kind] = good
    return ("; ".join(bad) if bad else None), records


def heal_dead_leftovers() -> list[str]:
    """Heal the nftables tables and tmpfs mounts that faults of a process that is gone left behind (what a
    SIGKILLed drill leaves), from the default fault state; a live process's faults are its own business. Returns
    one line per thing healed, or how to clean up by hand. Used by ``drill`` before it starts and by ``down``."""
    from faults import files, kernel

    out: list[str] = []
    for heal in (kernel.heal_leftovers, files.heal_leftovers):
        try:
            out += [line for line in heal(FaultState()) if not line.startswith("kept ")]
        except Exception as exc:  # noqa: BLE001 - report and go on with the other kind
            out.append(f"could not heal fault leftovers ({exc}); run `tradedrill faults heal-all`")
    return out


@faults.command("heal-all")
@click.option("--state-file", type=click.Path(dir_okay=False), default=None,
              help="fault state file of the run (default: $TRADEDRILL_FAULTS_STATE or .tradedrill/faults-state.json)")
@click.option("--force", is_flag=True, help="also delete nftables tables of processes that still run")
def heal_all(state_file: str | None, force: bool) -> None:
    """Remove leftovers of crashed runs: toxics, disabled or harness-owned proxies, nftables tables, tmpfs mounts.

    A damaged state file is reported (which file, what is wrong, what to do) and left as it is; what can be found
    without it (nftables tables ``tradedrill_<pid>`` of processes that are gone, records still readable in the
    file) is healed anyway. Exit status 1 when anything could not be healed or the file is damaged."""
    from faults import files, kernel, network

    path = Path(state_file) if state_file else default_state_path()
    problem, salvaged = state_file_problem(path)
    scratch = None
    if problem is None:
        state = FaultState(path)
    else:
        # heal from a copy of what is readable; the damaged file stays untouched for the user to inspect
        scratch = tempfile.TemporaryDirectory(prefix="tradedrill-heal-")
        state = FaultState(Path(scratch.name) / "salvaged.json")
        for kind, records in salvaged.items():
            for record in records:
                state.add(kind, record)
    done: list[str] = []
    errors: list[str] = []
    try:
        for step in (lambda: network.heal_leftovers(state), lambda: kernel.heal_leftovers(state, force=force),
                     lambda: files.heal_leftovers(state)):
            try:
                done += step()
            except Exception as exc:  # noqa: BLE001 - the other kinds must still be cleaned
                errors.append(str(exc) or type(exc).__name__)
        leftover = state.entries() if problem is not None else {}
    finally:
        if scratch is not None:
            scratch.cleanup()
    for line in done:
        click.echo(line)
    if not done:
        click.echo("nothing to heal")
    for line in errors:
        click.echo(f"could not heal: {line}", err=True)
    if problem is not None:
        still = sum(len(v) for v in leftover.values())
        click.echo(
            f"fault state file {path} is damaged ({problem}): the faults it recorded (toxics, disabled proxies, "
            f"mounts) cannot all be found, so some may still be active; healed what could be found without it"
            f"{f' ({still} readable record(s) could not be healed)' if still else ''}. Check the fault proxy "
            f"(GET /proxies) and tmpfs mounts (findmnt -t tmpfs), then move the file away "
            f"(mv {path} {path}.damaged) and run heal-all again.", err=True)
    sys.exit(1 if errors or problem is not None else 0)


@faults.group("proxy")
def proxy() -> None:
    """The Toxiproxy-compatible fault proxy (TCP and UDP)."""


@proxy.command("serve")
@click.option("--listen", default="127.0.0.1:8474", show_default=True,
              help="address of the HTTP API (host:port on loopback)")
@click.option("--seed", default="0", show_default=True, help="the run's seed (toxicity, jitter, UDP loss draws)")
def serve(listen: str, seed: str) -> None:
    """Serve the Toxiproxy HTTP API until interrupted."""
    from faults.proxy.server import AddressError, api_address, serve_forever

    try:
        api_address(listen)
    except AddressError as exc:
        raise OptionError(f"--listen: {exc}") from None

    def ready(server) -> None:
        click.echo(f"fault proxy API on {server.url} (seed {seed})", err=True)

    try:
        asyncio.run(serve_forever(listen, seed, ready))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror or exc}; pick another --listen") \
            from None
