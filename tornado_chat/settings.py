"""Server settings: one frozen dataclass, read from flags, then environment, then defaults.

Every option is declared once in ``options.OPTIONS``; the command-line parser, the
``TORNADO_CHAT_*`` environment variables, ``--help`` and the documentation
table in ``docs/operations.md`` all come from that table. Values are checked by
``load_settings`` and a bad value raises ``SettingsError`` with a one-line
message; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .options import ENV_PREFIX, OPTIONS, Option

__all__ = ["ENV_PREFIX", "OPTIONS", "Option", "Settings", "SettingsError", "load_settings", "option_table"]


class SettingsError(ValueError):
    """A setting has a value the server cannot run with; the message is one line."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server can be told. Durations in seconds, sizes in bytes."""

    address: str = "127.0.0.1"
    port: int = 8888
    data_dir: Path = Path("./chat-data")
    secret: str | None = None
    max_message_bytes: int = 65536
    max_text_chars: int = 4000
    allowed_origins: tuple[str, ...] = ()
    log_format: str = "text"
    log_level: str = "info"
    token_ttl_s: float = 7 * 24 * 3600.0
    ping_interval_s: float = 25.0
    ping_timeout_s: float = 10.0
    heartbeat_tick_s: float = 0.25
    ops_address: str = "127.0.0.1"
    ops_port: int = 8889
    loop_lag_unhealthy_s: float = 1.0
    store: str = "sqlite"
    sync: str = "full"
    max_commit_batch: int = 1000
    replay_limit: int = 1000
    reconnect_spread_s: float = 5.0
    shutdown_timeout_s: float = 10.0
    max_connections: int = 20000
    max_connections_per_user: int = 10
    trust_proxy_headers: bool = False
    event_loop: str = "auto"
    registration: str = "open"
    allow_guests: bool = False
    login_attempts_per_min: int = 10
    registrations_per_hour: int = 20
    login_delay_max_s: float = 10.0
    max_hashes_queued: int = 32
    max_body_bytes: int = 64 * 1024
    idle_timeout_s: float = 20.0
    body_timeout_s: float = 10.0
    max_rooms_per_user: int = 1000
    room_creations_per_hour: int = 100
    ops_allowed_hosts: tuple[str, ...] = ()
    rate_limit_per_s: float = 20.0
    rate_limit_burst: int = 40
    max_buffered_bytes: int = 1024 * 1024
    certfile: Path | None = None
    keyfile: Path | None = None
    compression: str = "off"
    websocket_retry_s: float = 180.0

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (still validated by the caller if needed)."""
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name for f in dataclasses.fields(Settings)}
assert {o.field for o in OPTIONS} <= _FIELDS, "every option names a Settings field"


def _default_text(field: str) -> str:
    """A field's default as people write it on a command line."""
    default = getattr(Settings(), field)
    if isinstance(default, tuple):
        default = ",".join(default)
    if isinstance(default, float):
        return f"{default:g}"
    if default in ("", None):
        return "none"
    return str(default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per option; defaults are left as None so the environment can fill in."""
    for option in OPTIONS:
        help_text = f"{option.help} (env {option.env}; default: {_default_text(option.field)})"
        if option.is_flag:
            parser.add_argument(
                option.flag,
                dest=option.field,
                nargs="?",
                const="true",
                default=None,
                metavar=option.metavar,
                help=help_text,
            )
        else:
            parser.add_argument(option.flag, dest=option.field, default=None, metavar=option.metavar, help=help_text)


def load_settings(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Build validated settings: a flag wins over its environment variable, which wins over the default.

    ``flags`` maps field names to the raw text given on the command line (None when absent).
    Raises ``SettingsError`` naming the flag and the problem.
    """
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = flags.get(option.field)
        source = option.flag
        if raw is None and option.env in environ:
            raw = environ[option.env]
            source = option.env
        if raw is None:
            continue
        try:
            value = option.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{source}: {raw!r} is not valid ({exc})") from None
        if option.check is not None and (problem := option.check(value)) is not None:
            raise SettingsError(f"{source}: {problem} (got {raw!r})")
        values[option.field] = value
    settings = Settings(**values)
    if settings.heartbeat_tick_s > settings.ping_interval_s:
        raise SettingsError("--heartbeat-tick: must not be longer than --ping-interval")
    if (settings.certfile is None) != (settings.keyfile is None):
        raise SettingsError("--certfile and --keyfile: give both to serve TLS, or neither")
    return settings


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Settings from a parsed namespace made by a parser that ``add_arguments`` filled."""
    return load_settings({o.field: getattr(args, o.field, None) for o in OPTIONS}, environ)


def option_table(options: Sequence[Option] = OPTIONS) -> str:
    """A Markdown table of every option, for docs/operations.md."""
    rows = ["| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for option in options:
        rows.append(f"| `{option.flag}` | `{option.env}` | `{_default_text(option.field)}` | {option.help} |")
    return "\n".join(rows)
