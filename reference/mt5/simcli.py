"""``tradedrill mt5sim``: run a simulated MT5 broker, and poke a running one (behaviour, ledger).

Also runnable as ``python -m reference.mt5.simcli serve ...`` (what ``tradedrill.services.mt5sim`` uses: it starts
faster than the full ``tradedrill`` CLI, which imports every area).

A wrong option is one line on stderr and exit status 2 (never a traceback); a simulator that cannot listen exits 1.
"""
from __future__ import annotations

import asyncio
import gc
import ipaddress
import json
import logging
import sys
from pathlib import Path

import click

TOKEN_HELP = ("File holding the simulator's admin token (mode 0600); admin calls (behaviour, ledger, ...) need it. "
              "Without it the simulator refuses every admin call but ping.")


class OptionError(click.ClickException):
    """A wrong option or option value: one line, exit status 2 (like a usage error, without the usage text)."""

    exit_code = 2


def check_host(host: str, allow_remote: bool) -> str:
    """``host`` if it is a loopback address (or ``localhost``); any address with ``allow_remote``."""
    if allow_remote:
        return host
    if host == "localhost":
        return host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise OptionError(f"--host {host!r} is not an IP address; give a loopback address such as 127.0.0.1 "
                          f"(or add --allow-remote to listen on another address)") from None
    if not address.is_loopback:
        raise OptionError(f"--host {host} is not a loopback address: the simulator has no transport security and "
                          f"is only meant for this machine; use 127.x.y.z, or add --allow-remote if you mean it")
    return host


def check_port(port: int, option: str = "--port") -> int:
    if not 0 <= port <= 65535:
        raise OptionError(f"{option} {port} is not a TCP port; give 1-65535 (0 picks a free one)")
    return port


def _token(path: Path | None) -> str | None:
    from reference.mt5.simclient import AdminTokenError, read_admin_token

    if path is None:
        return None
    try:
        return read_admin_token(path, private=True)
    except AdminTokenError as exc:
        raise OptionError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def mt5sim() -> None:
    """A faithful MetaTrader 5 broker simulator (its own process: kill it, pause it, cut it off)."""


@mt5sim.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback only, unless "
              "--allow-remote).")
@click.option("--allow-remote", is_flag=True, help="Allow a --host that is not a loopback address.")
@click.option("--port", default=18812, show_default=True, type=int, help="TCP port (0 picks a free one).")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory of the broker's durable state (journal + snapshot); reused on restart.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the price walk and the fault dice.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON or TOML file with accounts, symbols and behaviour.")
@click.option("--server-name", default=None, help="Broker server name (account_info().server).")
@click.option("--behaviour", "behaviour_json", default=None,
              help='Behaviour overrides as JSON, e.g. \'{"requote_rate": 0.1}\'.')
@click.option("--admin-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help=TOKEN_HELP)
@click.option("--max-connections", default=None, type=int, help="Most connections at once (default 64); more are "
              "closed at once.")
@click.option("--frame-timeout", default=None, type=float, help="Seconds a request frame may take from its first "
              "byte to its last (default 10).")
def serve(host, allow_remote, port, state_dir, seed, config_file, server_name, behaviour_json, admin_token_file,
          max_connections, frame_timeout) -> None:
    """Serve a simulated broker until SIGTERM."""
    from reference.mt5.simulator import server as server_module
    from reference.mt5.simulator.broker import Broker
    from reference.mt5.simulator.config import SimConfig

    check_host(host, allow_remote)
    check_port(port)
    if max_connections is None:
        max_connections = server_module.DEFAULT_MAX_CONNECTIONS
    if frame_timeout is None:
        frame_timeout = server_module.DEFAULT_FRAME_TIMEOUT
    if not 1 <= max_connections <= 100_000:
        raise OptionError(f"--max-connections {max_connections} must be in [1, 100000]")
    if not 0.1 <= frame_timeout <= 3600:
        raise OptionError(f"--frame-timeout {frame_timeout:g} must be in [0.1, 3600] seconds")
    token = _token(admin_token_file)
    try:
        config = SimConfig.from_file(config_file) if config_file else SimConfig()
        if server_name:
            config.server = server_name
        if behaviour_json:
            overrides = json.loads(behaviour_json)
            if not isinstance(overrides, dict):
                raise ValueError("--behaviour must be a JSON object of settings")
            config.behaviour.update(**overrides)
        config.check()
    except (ValueError, TypeError, OSError) as exc:
        raise OptionError(f"cannot use this configuration: {exc}. Fix the file or option and retry.") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        broker = Broker(config, state_dir, seed=seed)
    except OSError as exc:
        raise click.ClickException(f"cannot use the state directory {state_dir}: {exc}") from None
    # the ledger is many small acyclic dicts: full GC passes over it were the p99 of order_send (3.8 ms -> 0.4 ms
    # in-process); reference counting frees them, so move what exists out of GC and make collections rare
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    if token is None:
        logging.getLogger("mt5sim").warning("no --admin-token-file: every admin call but ping is refused")
    server = server_module.SimServer(broker, host, port, admin_token=token, max_connections=max_connections,
                                     frame_timeout=frame_timeout)
    try:
        asyncio.run(server.serve_forever())
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Pick another --port.")


def _admin(host: str, port: int, token_file: Path | None):
    from reference.mt5.simclient import SimulatorAdmin

    check_port(port)
    if token_file is None:
        raise OptionError("--admin-token-file is required: admin calls need the simulator's token "
                          "(the file its `serve --admin-token-file` reads)")
    return SimulatorAdmin(host, port, token=_token(token_file))


def _run_admin(action) -> None:
    from reference.mt5.simclient import AdminError

    try:
        action()
    except AdminError as exc:
        raise click.ClickException(str(exc)) from None


@mt5sim.command("set")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=18812, show_default=True, type=int)
@click.option("--admin-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="MT5SIM_ADMIN_TOKEN_FILE", help=TOKEN_HELP)
@click.argument("settings", nargs=-1, required=True)
def set_behaviour(host, port, admin_token_file, settings) -> None:
    """Change a running simulator's behaviour: KEY=JSON_VALUE ... (e.g. requote_rate=0.2 trade_allowed=false)."""
    changes = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OptionError(f"setting {item!r} is not KEY=VALUE (e.g. requote_rate=0.2)")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value

    def action():
        with _admin(host, port, admin_token_file) as admin:
            click.echo(json.dumps(admin.set_behaviour(**changes), indent=2))

    _run_admin(action)


@mt5sim.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=18812, show_default=True, type=int)
@click.option("--admin-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="MT5SIM_ADMIN_TOKEN_FILE", help=TOKEN_HELP)
@click.option("--login", default=None, type=int)
def ledger(host, port, admin_token_file, login) -> None:
    """Print every deal the simulator executed, one JSON object a line."""
    def action():
        with _admin(host, port, admin_token_file) as admin:
            for deal in admin.ledger(login=login):
                click.echo(json.dumps(deal))

    _run_admin(action)


if __name__ == "__main__":
    sys.exit(mt5sim())
