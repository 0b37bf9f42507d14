"""Every option the server takes: its flag, environment variable, parser, check and help, declared once.

``settings.py`` turns this table into the command line, the environment
variables, ``--help`` and the table in ``docs/operations.md``. A check returns
why a value is unusable (one line), or None.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "TORNADO_CHAT_"


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be between 0 and 65535"


def _address(value: str) -> str | None:
    if value in ("localhost", ""):
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if re.fullmatch(r"[A-Za-z0-9.-]{1,253}", value):
            return None
        return "must be an IP address or a host name"
    return None


def _choice(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _origins(value: tuple[str, ...]) -> str | None:
    for origin in value:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            return f"{origin!r} is not an origin like https://chat.example.org"
    return None


def _min(lowest: float) -> Callable[[float], str | None]:
    def check(value: float) -> str | None:
        return None if value >= lowest else f"must be at least {lowest:g}"

    return check


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def _parse_hosts(text: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in text.split(",") if part.strip())


def _hosts(value: tuple[str, ...]) -> str | None:
    for host in value:
        if _address(host) is not None:
            return f"{host!r} is not a host name or an IP address"
    return None


def _parse_origins(text: str) -> tuple[str, ...]:
    return tuple(part.strip().rstrip("/") for part in text.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its flag, how to parse text into it, how to check it, and its help."""

    field: str
    help: str
    parse: Callable[[str], Any]
    check: Callable[[Any], str | None] | None = None
    metavar: str | None = None
    is_flag: bool = False
    # The flag's name without dashes, when the field's name (less a unit suffix) does not read well.
    name: str | None = None

    @property
    def _name(self) -> str:
        """The field's name without its seconds suffix: ping_interval_s is --ping-interval."""
        return self.name or self.field.removesuffix("_s")

    @property
    def flag(self) -> str:
        return "--" + self._name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self._name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("address", "address the chat listener binds", str, _address, "ADDR"),
    Option("port", "port of the chat listener (0 picks a free one)", int, _port, "PORT"),
    Option("data_dir", "directory for the database and the generated secret (created if missing)", Path, None, "DIR"),
    Option(
        "secret",
        "key that signs login tokens; when absent one is generated once and kept in DATA_DIR/secret (mode 0600)",
        str,
        None,
        "KEY",
    ),
    Option(
        "max_message_bytes",
        "largest WebSocket message accepted, in bytes; larger ones close the connection with 1009",
        int,
        _min(256),
        "BYTES",
    ),
    Option("max_text_chars", "longest message text, in characters", int, _min(1), "CHARS"),
    Option(
        "allowed_origins",
        "comma-separated extra origins allowed to open WebSockets and post to the API"
        " (the page's own origin is always allowed; * allows any)",
        _parse_origins,
        _origins,
        "ORIGINS",
    ),
    Option("log_format", "log line format: text or json", str, _choice("text", "json"), "FORMAT"),
    Option(
        "log_level",
        "least severe level logged: debug, info, warning or error",
        str.lower,
        _choice("debug", "info", "warning", "error"),
        "LEVEL",
    ),
    Option("token_ttl_s", "lifetime of a login token, in seconds", float, _positive, "SECONDS"),
    Option(
        "ping_interval_s",
        "seconds between heartbeat pings to each connection; browsers send an application ping as often",
        float,
        _positive,
        "SECONDS",
    ),
    Option(
        "ping_timeout_s",
        "extra seconds of silence after a ping interval before a connection counts as dead",
        float,
        _positive,
        "SECONDS",
    ),
    Option(
        "heartbeat_tick_s",
        "period of the one heartbeat timer that sends due pings and reaps silent connections, in seconds",
        float,
        _positive,
        "SECONDS",
    ),
    Option("ops_address", "address of the ops listener (/metrics, /healthz, /readyz, /status)", str, _address, "ADDR"),
    Option("ops_port", "port of the ops listener (0 picks a free one)", int, _port, "PORT"),
    Option(
        "ops_allowed_hosts",
        "comma-separated host names the ops listener answers to, besides loopback addresses and --ops-address;"
        " a request naming another Host gets 403 (a page that rebinds its DNS name to this address names its own)",
        _parse_hosts,
        _hosts,
        "HOSTS",
    ),
    Option(
        "loop_lag_unhealthy_s",
        "event loop lag above which /healthz answers 503, in seconds",
        float,
        _positive,
        "SECONDS",
    ),
    Option(
        "store",
        "message store: sqlite (durable, in DATA_DIR) or memory (forgotten on exit; for demos and tests)",
        str,
        _choice("sqlite", "memory"),
        "KIND",
    ),
    Option(
        "sync",
        "SQLite synchronous mode: full (an acked message survives power loss) or normal (faster; survives a"
        " crash of the process but not of the machine)",
        str.lower,
        _choice("full", "normal"),
        "MODE",
    ),
    Option(
        "max_commit_batch",
        "most writes the store commits in one transaction (group commit); 1 commits every message on its own",
        int,
        _min(1),
        "COUNT",
    ),
    Option(
        "replay_limit",
        "most messages replayed on reconnect; beyond it the newest are sent and the reply says truncated",
        int,
        _min(1),
        "COUNT",
    ),
    Option(
        "reconnect_spread_s",
        "on shutdown each client is told to wait a random delay up to this many seconds before reconnecting",
        float,
        _min(0),
        "SECONDS",
    ),
    Option(
        "max_connections",
        "most WebSocket connections in total; past it handshakes get 503 (too_many_connections)",
        int,
        _min(1),
        "COUNT",
    ),
    Option(
        "max_connections_per_user",
        "most WebSocket connections one user may hold (tabs, devices); past it handshakes get 503",
        int,
        _min(1),
        "COUNT",
    ),
    Option(
        "event_loop",
        "event loop: uvloop (faster fan-out; pip install 'tornado-chat[fast]'), asyncio, or auto (uvloop when"
        " installed)",
        str,
        _choice("auto", "uvloop", "asyncio"),
        "LOOP",
    ),
    Option(
        "registration",
        "who may create accounts: open (anyone, with POST /api/register) or closed (the admin CLI only)",
        str,
        _choice("open", "closed"),
        "MODE",
    ),
    Option(
        "allow_guests",
        "allow passwordless logins as guest-NAME; for demos and load tests",
        _parse_bool,
        None,
        "BOOL",
        is_flag=True,
    ),
    Option(
        "login_attempts_per_min",
        "failed password checks (logins, password changes) allowed per minute per client address before 429; an"
        " attempt counts as failed from its start until it succeeds",
        int,
        _min(1),
        "COUNT",
    ),
    Option(
        "registrations_per_hour",
        "accounts one client address may register per hour; more get 429 (guest logins are not limited)",
        int,
        _min(1),
        "COUNT",
    ),
    Option(
        "login_delay_max_s",
        "longest wait failed logins for a user name impose on the next attempt at it (doubling from 1 s after 5"
        " failures in 15 minutes), in seconds; a delay, never a lockout",
        float,
        _min(0),
        "SECONDS",
    ),
    Option(
        "max_hashes_queued",
        "password hashes (logins, registrations, password changes) running or waiting at once; more get 503 busy",
        int,
        _min(1),
        "COUNT",
    ),
    Option(
        "max_body_bytes",
        "largest HTTP request body accepted on the chat listener, in bytes; larger ones get 413",
        int,
        _min(1024),
        "BYTES",
    ),
    Option(
        "idle_timeout_s",
        "seconds an HTTP connection may stay idle, or take to send a request's headers, before it is closed"
        " (WebSockets are watched by the heartbeat instead)",
        float,
        _positive,
        "SECONDS",
    ),
    Option(
        "body_timeout_s",
        "seconds an HTTP request body may take to arrive before the connection is closed",
        float,
        _positive,
        "SECONDS",
    ),
    Option(
        "max_rooms_per_user",
        "rooms one user may be a member of; a join, create or invite into one more gets too_many_rooms",
        int,
        _min(1),
        "COUNT",
    ),
    Option(
        "room_creations_per_hour",
        "rooms one user may create per hour (by create, or by a join that creates the room); more get too_many_rooms",
        int,
        _min(1),
        "COUNT",
    ),
    Option(
        "rate_limit_per_s",
        "frames per second each connection may send on average; more get rate_limited errors",
        float,
        _positive,
        "FRAMES",
        name="rate_limit",
    ),
    Option(
        "rate_limit_burst",
        "frames a connection may send at once above the average rate",
        int,
        _min(1),
        "COUNT",
    ),
    Option(
        "max_buffered_bytes",
        "outgoing bytes a connection may have waiting to be written; past it the connection is closed"
        " with 1013 (slow consumer)",
        int,
        _min(4096),
        "BYTES",
    ),
    Option(
        "certfile",
        "PEM certificate chain: serve https:// and wss:// on the chat port (with --keyfile); a reverse proxy"
        " that terminates TLS is the recommended deployment",
        Path,
        None,
        "PATH",
    ),
    Option("keyfile", "PEM private key of --certfile", Path, None, "PATH"),
    Option(
        "compression",
        "permessage-deflate on WebSockets: off, or on (negotiated when a client offers it; no compression"
        " state is kept between messages)",
        str.lower,
        _choice("off", "on"),
        "MODE",
    ),
    Option(
        "websocket_retry_s",
        "how often a page that fell back to HTTP (event stream or long polling) tries WebSocket again in the"
        " background, in seconds",
        float,
        _min(1),
        "SECONDS",
    ),
    Option(
        "trust_proxy_headers",
        "trust the client address and scheme a reverse proxy reports (X-Forwarded-For, X-Real-IP,"
        " X-Forwarded-Proto, X-Scheme); set only behind a proxy that overwrites all four",
        _parse_bool,
        None,
        "BOOL",
        is_flag=True,
    ),
    Option(
        "shutdown_timeout_s",
        "seconds a graceful shutdown (SIGTERM, SIGINT) may take before the process exits regardless",
        float,
        _positive,
        "SECONDS",
    ),
)
