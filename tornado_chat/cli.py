"""The ``tornado-chat`` command: parse settings, prepare the data directory, run the server."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import secrets
import signal
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import prometheus_client

from . import __version__
from .admin import AdminError, add_audit_command, add_user_commands, run_audit_command, run_user_command
from .logs import setup_logging
from .memory_store import MemoryStore
from .server import ChatServer
from .settings import Settings, SettingsError, add_arguments, settings_from_args
from .sqlite_store import SqliteStore
from .store import Store, StoreError

log = logging.getLogger("tornado_chat")

SECRET_FILE = "secret"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
# Files the server creates (the database, its journal, the secret) are for its own user only.
UMASK = 0o077


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tornado-chat",
        description="A self-hosted real-time chat server. Every option can also be set with the "
        "environment variable named after it; a flag wins over the variable.",
    )
    parser.add_argument("--version", action="version", version=f"tornado-chat {__version__}")
    add_arguments(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", help="with no command, run the server")
    add_user_commands(commands)
    add_audit_command(commands)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.umask(UMASK)
    try:
        settings = settings_from_args(args, os.environ if environ is None else environ)
    except SettingsError as exc:
        print(f"tornado-chat: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command in ("user", "audit"):
        run = run_user_command if args.command == "user" else run_audit_command
        try:
            run(args, settings.data_dir, settings.sync)
        except AdminError as exc:
            print(f"tornado-chat: error: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        return EXIT_OK
    setup_logging(settings.log_format, settings.log_level)
    # The *_created series double the number of series and no dashboard or alert here reads them.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        secret = prepare_data_dir(settings)
    except OSError as exc:
        print(f"tornado-chat: error: data directory {settings.data_dir}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        ssl_context = tls_context(settings)
    except SettingsError as exc:
        print(f"tornado-chat: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        return runner.run(serve(settings, secret, ssl_context))


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context from ``--certfile``/``--keyfile``, or None; ``SettingsError`` in one line."""
    if settings.certfile is None or settings.keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.certfile, settings.keyfile)
    except OSError as exc:
        # An ssl.SSLError (a file that is not PEM, a key that does not match) is an OSError too.
        cause = exc.strerror or getattr(exc, "reason", None) or str(exc)
        name = exc.filename or f"{settings.certfile} with {settings.keyfile}"
        raise SettingsError(f"--certfile/--keyfile: {name}: {cause}") from None
    return context


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to run on: uvloop when asked for or, with ``auto``, when installed (extra ``[fast]``)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - optional: the [fast] extra
    except ImportError:
        if choice == "uvloop":
            raise SystemExit(
                "tornado-chat: error: --event-loop uvloop: uvloop is not installed (pip install 'tornado-chat[fast]')"
            ) from None
        return None
    new_event_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new_event_loop


def prepare_data_dir(settings: Settings) -> bytes:
    """Create the data directory if missing and return the token secret (from settings or the secret file)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.secret:
        return settings.secret.encode("utf-8")
    return load_or_create_secret(settings.data_dir / SECRET_FILE)


def load_or_create_secret(path: Path) -> bytes:
    """The secret kept in ``path``, generated on first use and readable by the owner only (0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes().strip()
        if not secret:
            raise OSError(f"{path} is empty; delete it to generate a new secret") from None
        return secret
    secret = secrets.token_urlsafe(48).encode("ascii")
    with os.fdopen(fd, "wb") as file:
        file.write(secret + b"\n")
        file.flush()
        os.fsync(file.fileno())
    return secret


def make_store(settings: Settings) -> Store:
    if settings.store == "memory":
        return MemoryStore()
    return SqliteStore(settings.data_dir, settings.sync, settings.max_commit_batch)


async def serve(settings: Settings, secret: bytes, ssl_context: ssl.SSLContext | None = None) -> int:
    """Run until SIGTERM or SIGINT, then shut down; returns the exit code."""
    server = ChatServer(settings, make_store(settings), secret, ssl_context=ssl_context)
    try:
        server.listen()
    except StoreError as exc:
        print(f"tornado-chat: error: database {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.address, settings.port, exc.strerror or exc)
        return EXIT_FAILURE
    # Everything loaded so far (users, rooms, memberships, modules) lives as long as the process: keep it out
    # of the cyclic garbage collector's full passes, whose pause grows with every object they scan.
    gc.freeze()
    log.info(
        "tornado-chat %s listening on %s://%s:%d/ (ops on http://%s:%d/)",
        __version__,
        "https" if ssl_context is not None else "http",
        settings.address,
        server.chat_port,
        settings.ops_address,
        server.ops_port,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("shutting down")
    try:
        await asyncio.wait_for(server.stop(), settings.shutdown_timeout_s)
    except TimeoutError:
        log.error("shutdown took longer than %gs; exiting without finishing it", settings.shutdown_timeout_s)
        return EXIT_FAILURE
    log.info("stopped")
    return EXIT_OK
