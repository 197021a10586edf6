"""The typed schemas of the JSON settings files (CFG-2: validated on load): the EA's settings and the engine's user
settings (trade parameters). Each field's default is the design documents' value with its requirement ID.

pydantic (already in the stack through FastAPI) does the checking: strict types (``"3"`` is not 3, ``true`` is not
1), no unknown keys (a typo is an error, not a silent default), no NaN or infinity. ``parse_settings`` turns its
errors into one :class:`SettingsError` line that names the field.

The numbers here are what a user may change. Broker logins are not settings: they live encrypted in PostgreSQL
(``reference.settings.logins``, PG-1); ``EngineUserSettings.brokers`` names them.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from .errors import SettingsError

Symbol = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._#-]{1,32}$")]
BrokerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
NotifyEvent = Literal["ea_crash", "ea_stopped", "broker_down", "order_failed", "redis_down", "config_restored"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False,
                              validate_default=True, hide_input_in_errors=False)

    version: Literal[1] = 1


class EASettings(_Settings):
    """The EA's settings (EA-BR 2.1 "EA configuration": user settings, trade parameters). Seconds are floats."""

    symbols: list[Symbol] = Field(default_factory=lambda: ["EURUSD"], max_length=64)
    # EA-1: supervised; restart within 1 s; 3 failed restarts in 30 s -> stop and alert
    restart_within_s: float = Field(1.0, gt=0, le=60)
    restart_failures_to_stop: int = Field(3, ge=1, le=100)
    restart_window_s: float = Field(30.0, gt=0, le=3600)
    # EA-2: UDP ticks, TCP backup
    udp_port: int = Field(9010, ge=1, le=65535)
    tcp_port: int = Field(9011, ge=1, le=65535)
    udp_loss_to_tcp_ms: int = Field(100, ge=1, le=60_000)       # EA-2: UDP loss -> TCP within 100 ms
    tcp_reconnect_s: float = Field(2.0, gt=0, le=3600)          # EA-2: TCP reconnect every 2 s
    tcp_reconnect_attempts: int = Field(10, ge=1, le=1000)      # EA-2: 10 attempts
    # EA-3: session state in RIS
    session_reconnect_s: float = Field(2.0, gt=0, le=3600)      # EA-3: reconnect every 2 s
    session_new_after: int = Field(5, ge=1, le=1000)            # EA-3: after 5 failed recoveries, a new session
    # EA-4: network down
    network_down_restart_s: float = Field(30.0, gt=0, le=86400)  # EA-4: down 30 s -> restart the EA
    network_reconnect_attempts: int = Field(10, ge=1, le=1000)   # EA-4: exponential backoff, 10 attempts
    # notification settings (EA-BR 2.1 "user preferences")
    notify_on: list[NotifyEvent] = Field(
        default_factory=lambda: ["ea_crash", "ea_stopped", "broker_down", "order_failed", "redis_down",
                                 "config_restored"], max_length=16)
    webhook_url: str = Field("", max_length=2048)

    @model_validator(mode="after")
    def _ports_differ(self) -> "EASettings":
        if self.udp_port == self.tcp_port:
            raise ValueError("udp_port and tcp_port must differ")
        return self


class EngineUserSettings(_Settings):
    """The trade parameters a user sets for the engine (EA-BR 2.1). Volumes in lots."""

    trading_enabled: bool = True
    symbols: list[Symbol] = Field(default_factory=lambda: ["EURUSD"], max_length=256)
    default_volume: float = Field(0.01, gt=0, le=1_000_000)
    max_volume: float = Field(100.0, gt=0, le=1_000_000)
    deviation_points: int = Field(20, ge=0, le=100_000)
    filling: Literal["fok", "ioc", "return"] = "ioc"
    signal_max_age_s: float = Field(0.0, ge=0, le=86400)        # 0 = never stale
    # broker logins by name, primary first; login, password and server come from PostgreSQL (PG-1)
    brokers: list[BrokerName] = Field(default_factory=lambda: ["mt5-primary", "mt5-backup"], min_length=1,
                                      max_length=16)
    order_retry_backoff_s: list[Annotated[float, Field(gt=0, le=3600)]] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0], min_length=1, max_length=20)  # ORD-1

    @model_validator(mode="after")
    def _volumes(self) -> "EngineUserSettings":
        if self.default_volume > self.max_volume:
            raise ValueError("default_volume must not exceed max_volume")
        if len(set(self.brokers)) != len(self.brokers):
            raise ValueError("brokers must name each broker once")
        return self


M = TypeVar("M", bound=BaseModel)

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "true/false", int: "a number",
               float: "a number", type(None): "null"}


def _field_name(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_validation_error(err: ValidationError, source: str) -> SettingsError:
    """One :class:`SettingsError` line for a pydantic error: the first problem with its field, and how many more."""
    problems = err.errors(include_url=False)
    first = problems[0]
    more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
    kind = first.get("type", "")
    msg = str(first.get("msg", "invalid")).replace("Value error, ", "")
    loc = tuple(first.get("loc", ()))
    if kind == "json_invalid":
        return SettingsError(f"{source} is not valid JSON: {first.get('ctx', {}).get('error', msg)}", source=source)
    name = _field_name(loc)
    if not name:
        given = _JSON_TYPES.get(type(first.get("input")), type(first.get("input")).__name__)
        if kind == "model_type":
            return SettingsError(f"{source} must hold a JSON object of settings, not {given}", source=source)
        return SettingsError(f"{source}: {msg}{more}", source=source)
    if kind == "missing":
        return SettingsError(f"{source}: field '{name}' is missing{more}", field=name, source=source)
    if kind == "extra_forbidden":
        return SettingsError(f"{source}: field '{name}' is not a known setting (a typo?){more}", field=name,
                             source=source)
    return SettingsError(f"{source}: field '{name}': {msg} (got {_show(first.get('input'))}){more}", field=name,
                         source=source)


def parse_settings(data: bytes | str, model: type[M], *, max_bytes: int | None = None,
                   source: str = "settings") -> M:
    """Validate the JSON text ``data`` against ``model`` (CFG-2). Returns the settings, or raises one
    :class:`SettingsError` line naming ``source`` and the field: invalid JSON (with line and column), a wrong type,
    a value out of range, an unknown or missing field, or more than ``max_bytes`` bytes (CFG-1's 10 KB cap)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if max_bytes is not None and len(raw) > max_bytes:
        raise SettingsError(f"{source} is {len(raw):,} bytes, over the {max_bytes:,}-byte cap (CFG-1)",
                            source=source)
    if not raw.strip():
        raise SettingsError(f"{source} is empty", source=source)
    if raw.startswith(b"\xef\xbb\xbf"):
        raise SettingsError(f"{source} starts with a UTF-8 byte order mark (an editor such as Notepad adds it): save "
                            f"it as UTF-8 without a BOM", source=source)
    try:
        settings = model.model_validate_json(raw)
    except ValidationError as err:
        raise describe_validation_error(err, source) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # the parser's own limits (depth, number size)
        raise SettingsError(f"{source} cannot be read as settings: {type(exc).__name__}: {str(exc)[:120]}",
                            source=source) from None
    _refuse_repeated_keys(raw, source)
    return settings


def _refuse_repeated_keys(raw: bytes, source: str) -> None:
    """A key written twice is an error naming the field: JSON parsers keep the last one in silence, so a
    ``"trading_enabled": false`` a user added at the top of the file was ignored."""
    def pairs(items: list[tuple[str, Any]], path: tuple = ()) -> dict:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise SettingsError(f"{source}: field '{key}' is written twice (JSON would keep only the last, "
                                    f"{_show(value)}, in silence): keep one", field=key, source=source)
            seen[key] = value
        return seen

    json.loads(raw, object_pairs_hook=pairs)


def dump_settings(settings: BaseModel) -> bytes:
    """The settings as the JSON bytes a store writes (indented, sorted as the schema declares, trailing newline)."""
    try:
        return settings.model_dump_json(indent=2).encode("utf-8") + b"\n"
    except (ValueError, UnicodeError) as exc:  # e.g. a lone surrogate in a string cannot be UTF-8
        raise SettingsError(f"these settings cannot be written as JSON: {str(exc)[:120]}") from None
