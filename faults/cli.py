"""``tradedrill faults``: heal what a crashed run left, and run the fault proxy as a process."""
from __future__ import annotations

import asyncio
import sys

import click

from faults.core import FaultState, default_state_path


@click.group()
def faults() -> None:
    """Fault injection: the fault proxy and clean-up after crashed runs."""


@faults.command("heal-all")
@click.option("--state-file", type=click.Path(dir_okay=False), default=None,
              help="fault state file of the run (default: $TRADEDRILL_FAULTS_STATE or .tradedrill/faults-state.json)")
@click.option("--force", is_flag=True, help="also delete nftables tables of processes that still run")
def heal_all(state_file: str | None, force: bool) -> None:
    """Remove leftovers of crashed runs: toxics, disabled or harness-owned proxies, nftables tables, tmpfs mounts."""
    from faults import files, kernel, network

    state = FaultState(state_file or default_state_path())
    done: list[str] = []
    errors: list[str] = []
    for step in (lambda: network.heal_leftovers(state), lambda: kernel.heal_leftovers(state, force=force),
                 lambda: files.heal_leftovers(state)):
        try:
            done += step()
        except Exception as exc:  # noqa: BLE001 - the other kinds must still be cleaned
            errors.append(str(exc))
    for line in done:
        click.echo(line)
    if not done:
        click.echo("nothing to heal")
    for line in errors:
        click.echo(f"could not heal: {line}", err=True)
    sys.exit(1 if errors else 0)


@faults.group("proxy")
def proxy() -> None:
    """The Toxiproxy-compatible fault proxy (TCP and UDP)."""


@proxy.command("serve")
@click.option("--listen", default="127.0.0.1:8474", show_default=True, help="address of the HTTP API")
@click.option("--seed", default="0", show_default=True, help="the run's seed (toxicity, jitter, UDP loss draws)")
def serve(listen: str, seed: str) -> None:
    """Serve the Toxiproxy HTTP API until interrupted."""
    from faults.proxy.server import serve_forever

    def ready(server) -> None:
        click.echo(f"fault proxy API on {server.url} (seed {seed})", err=True)

    try:
        asyncio.run(serve_forever(listen, seed, ready))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror}; pick another --listen") from None
