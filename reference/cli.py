"""``tradedrill engine ...``: run a trade engine process, submit a signal, lift an account suspension."""
from __future__ import annotations

import json
import sys
import time

import click


@click.group("engine", context_settings={"help_option_names": ["-h", "--help"]})
def engine() -> None:
    """The reference trade engine (exactly-once execution, active-passive failover)."""


def _load(config_path, instance, state_dir, sets):
    from reference.engine.config import ConfigError, EngineConfig
    overrides = {}
    if instance:
        overrides["instance"] = instance
    if state_dir:
        overrides["state_dir"] = state_dir
    for item in sets:
        key, _, raw = item.partition("=")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    try:
        return EngineConfig.load(config_path, overrides=overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _broker_logins(config) -> dict:
    """PG-1: the logins of the brokers configured without one, from PostgreSQL (``credentials_dsn``)."""
    from reference.settings.errors import CredentialsError
    from reference.settings.logins import apply_broker_logins
    try:
        return apply_broker_logins(config)
    except CredentialsError as exc:
        raise click.ClickException(f"broker logins: {exc}") from None


def _user_settings(config) -> dict:
    """CFG-1/2: the user's trade settings (``user_settings_dir``), or a one-line error when none is valid."""
    from reference.settings import SettingsError, load_user_settings
    try:
        return load_user_settings(config)[1]
    except SettingsError as exc:
        raise click.ClickException(f"user settings: {exc}") from None


@engine.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML or JSON engine configuration.")
@click.option("--instance", help="Instance name (unique within the engine group).")
@click.option("--state-dir", help="Directory for the journal and the event log.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one configuration key.")
@click.option("--echo-events", is_flag=True, help="Also write events to stderr.")
def run(config_path, instance, state_dir, sets, echo_events):
    """Run one engine instance until SIGTERM. Exits 70 if the watchdog sees a deadlock (ENG-3), 74 if its journal
    cannot be used even after repair, 75 if another live process holds its journal (the same instance twice)."""
    from reference.engine.engine import Engine
    from reference.engine.journal import JournalError
    config = _load(config_path, instance, state_dir, sets)
    logins = _broker_logins(config)
    user_settings = _user_settings(config)
    try:
        eng = Engine(config, echo_events=echo_events)
    except JournalError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_status)
    except (RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    eng.install_signal_handlers()
    click.echo(f"engine {config.group}/{config.instance}: events in {eng.events_path}", err=True)
    if eng.journal.repair is not None:   # DDB-3: the repair's one line in the engine's log too, not only in events
        click.echo(f"engine {config.group}/{config.instance}: journal: {eng.journal.repair.line}", err=True)
    if user_settings:       # CFG-2: which file was loaded, and when it was a backup, why (one line)
        eng.emit("user_settings_loaded", **user_settings)
        if user_settings["fell_back"]:
            click.echo(f"engine {config.group}/{config.instance}: settings: {user_settings['message']}", err=True)
    if logins["brokers"]:   # PG-1: names and key id only, never a login
        eng.emit("broker_logins_read", source="postgresql", **logins)
        click.echo(f"engine {config.group}/{config.instance}: broker logins of {', '.join(logins['brokers'])} read "
                   f"from PostgreSQL (key {logins['key_id']})", err=True)
    eng.run()


@engine.command("release-after-exit")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML or JSON engine configuration.")
@click.option("--instance", required=True, help="The instance that exited.")
@click.option("--state-dir", help="Its state directory (where it recorded the lease it held).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
def release_after_exit_cmd(config_path, instance, state_dir, sets):
    """For a supervisor, after it reaped INSTANCE's process: release the lease it held (compare-and-delete), so
    the passive instance takes over without waiting out the TTL (ENG-1). Only run it once the PID is gone."""
    from reference.engine.handoff import release_after_exit
    click.echo(release_after_exit(_load(config_path, instance, state_dir, sets)))


@engine.command("submit")
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.argument("fields", nargs=-1, required=True)
def submit(config_path, sets, fields):
    """Append one signal to RTSS: FIELDS are key=value (signal_id, account, symbol, side, volume, ...)."""
    from reference.engine.redislink import RedisLink, RedisUnavailable
    config = _load(config_path, None, None, sets)
    entry = dict(f.partition("=")[::2] for f in fields)
    entry.setdefault("created_ms", str(int(time.time() * 1000)))
    link = RedisLink(config, "submit")
    try:
        entry_id = link.run(lambda r: r.xadd(config.rtss_key, entry))
    except RedisUnavailable as exc:
        raise click.ClickException(f"{exc}; check the sentinels/redis address in the configuration") from None
    click.echo(entry_id)


@engine.command("resume-account")
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.argument("account")
def resume_account(config_path, sets, account):
    """Lift a NO_MONEY suspension of ACCOUNT (after topping it up)."""
    from reference.engine.redislink import RedisLink, RedisUnavailable
    config = _load(config_path, None, None, sets)
    link = RedisLink(config, "admin")
    try:
        n = link.run(lambda r: r.srem(f"{config.ris_prefix}:{config.group}:suspended_accounts", account))
    except RedisUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("resumed" if n else f"account {account} was not suspended")


if __name__ == "__main__":
    sys.exit(engine())
