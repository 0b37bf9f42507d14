"""``tornado-chat user ...`` and ``tornado-chat audit``: manage accounts and read the moderation log in the
data directory, with or without the server running.

Changes go straight into the SQLite database, in one transaction each, and
are recorded in ``auth_events``; a running server picks them up within a
second (a password change, a removal or a disable disconnects the user's open
sockets; an admin flag takes effect on the user's next frame).
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path
from typing import TextIO

from . import sqlite_accounts, sqlite_rooms
from .accounts import GUEST_PREFIX
from .names import NEW_NAME_PATTERN, NEW_NAME_RULE, name_key
from .passwords import hash_password, password_problem
from .protocol import ROOM_PATTERN, USERNAME_PATTERN
from .server_frames import iso_time
from .sqlite_schema import DB_FILE, NameCollisions, connect, migrate
from .store import StoreError

# Who did it, in the audit log, for changes made from the command line (not a valid user name).
CLI_ACTOR = "(command line)"
AUDIT_DEFAULT_LIMIT = 50


class AdminError(Exception):
    """A user command that cannot be done; the message is one line for the terminal."""


def add_user_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = subparsers.add_parser("user", help="manage accounts: add, remove, passwd, admin, disable, enable, list")
    user.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS, help="the server's data directory")
    actions = user.add_subparsers(dest="action", required=True)
    for name, text in (("add", "create an account"), ("passwd", "set a new password (ends all its sessions)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("username")
        action.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input instead of asking"
        )
        if name == "add":
            action.add_argument("--admin", action="store_true", help="make it a server admin")
    remove = actions.add_parser("remove", help="close an account for good (its name is never reused)")
    remove.add_argument("username")
    admin = actions.add_parser("admin", help="make an account a server admin (on) or not (off)")
    admin.add_argument("username")
    admin.add_argument("state", choices=("on", "off"))
    disable = actions.add_parser("disable", help="disable an account: its sessions end, its name stays taken")
    disable.add_argument("username")
    enable = actions.add_parser("enable", help="let a disabled account log in again")
    enable.add_argument("username")
    actions.add_parser("list", help="list accounts")


def add_audit_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser("audit", help="print the moderation log, newest first")
    audit.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS, help="the server's data directory")
    audit.add_argument("--room", help="only this room's entries")
    audit.add_argument("--limit", type=int, default=AUDIT_DEFAULT_LIMIT, help="how many entries (default 50)")


def _read_password(from_stdin: bool, stdin: TextIO) -> str:
    if from_stdin:
        password = stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise AdminError("the passwords differ")
    if (problem := password_problem(password)) is not None:
        raise AdminError(problem)
    return password


def run_user_command(args: argparse.Namespace, data_dir: Path, sync: str, out: TextIO = sys.stdout) -> None:
    """Carry out one ``user`` action; raises ``AdminError`` when it cannot."""
    data_dir.mkdir(parents=True, exist_ok=True)
    connection = connect(data_dir / DB_FILE, sync)
    try:
        collisions = False
        try:
            migrate(connection)
        except NameCollisions as exc:
            # The way out of this is "user remove", which the schema before the migration supports (names are
            # then exact: two of them differ only in case).
            if args.action not in ("list", "remove"):
                raise AdminError(str(exc)) from None
            collisions = True
        except StoreError as exc:
            raise AdminError(str(exc)) from None
        now = time.time()
        if args.action == "list":
            flags = sqlite_rooms.load(connection) if not collisions else None
            for row in sqlite_accounts.accounts(connection):
                state = "removed" if row.removed else "guest" if row.guest else "active"
                if flags is not None:
                    state += "\tdisabled" if row.name in flags.disabled else ""
                    state += "\tadmin" if row.name in flags.admins else ""
                print(f"{row.name}\t{state}", file=out)
            return
        name = args.username
        if not USERNAME_PATTERN.fullmatch(name):
            raise AdminError(f"{name!r} is not a valid user name")
        if args.action != "add" and not collisions:
            # An account is named in any case, as a login names it; the log and the feed carry its own spelling.
            name = sqlite_accounts.spelling(connection, name) or name
        if args.action in ("add", "passwd"):
            password = _read_password(args.password_stdin, sys.stdin)
            password_hash = hash_password(password)
        connection.execute("BEGIN IMMEDIATE")
        try:
            if args.action == "add":
                if not NEW_NAME_PATTERN.fullmatch(name):
                    raise AdminError(f"{name!r} is not a valid new user name: {NEW_NAME_RULE}")
                if name_key(name).startswith(GUEST_PREFIX):
                    raise AdminError(f"names starting with {GUEST_PREFIX!r} are for guests")
                if not sqlite_accounts.create_user(connection, name, password_hash, guest=False, now=now):
                    raise AdminError(f"{name} exists in some case (or existed: names are never reused)")
                if args.admin:
                    sqlite_rooms.set_admin(connection, name, True, CLI_ACTOR, now)
            elif args.action == "passwd":
                if not sqlite_accounts.set_password(connection, name, password_hash, now):
                    raise AdminError(f"no account called {name} that has a password")
            elif args.action == "remove" and not sqlite_accounts.remove_user(connection, name, now):
                raise AdminError(f"no account called {name}")
            elif args.action == "admin":
                grant = args.state == "on"
                if not sqlite_rooms.set_admin(connection, name, grant, CLI_ACTOR, now):
                    raise AdminError(f"no account called {name}, or it is {'an' if grant else 'not an'} admin already")
            elif args.action in ("disable", "enable"):
                disable = args.action == "disable"
                if not sqlite_rooms.set_disabled(connection, name, disable, CLI_ACTOR, now):
                    raise AdminError(f"no account called {name}, or it is {args.action}d already")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        print(f"{args.action}: {name}: done", file=out)
    finally:
        connection.close()


def run_audit_command(args: argparse.Namespace, data_dir: Path, sync: str, out: TextIO = sys.stdout) -> None:
    """Print the audit log (of one room with ``--room``), newest first, one tab-separated entry a line."""
    if args.room is not None and not ROOM_PATTERN.fullmatch(args.room):
        raise AdminError(f"{args.room!r} is not a valid room name")
    if args.limit < 1:
        raise AdminError("--limit must be at least 1")
    if not (data_dir / DB_FILE).exists():
        raise AdminError(f"no database in {data_dir}")
    connection = connect(data_dir / DB_FILE, sync)
    try:
        try:
            migrate(connection)
        except StoreError as exc:
            raise AdminError(str(exc)) from None
        # Every entry under the room's name, of the room there now and of any earlier room of that name.
        entries, more = sqlite_rooms.audit_entries(connection, args.room, None, args.limit, this_room=False)
    finally:
        connection.close()
    for entry in entries:
        where = f"#{entry.room}" if entry.room is not None else "-"
        target = entry.target if entry.target is not None else "-"
        seq = f"seq {entry.seq}" if entry.seq is not None else ""
        print(f"{iso_time(entry.at)}\t{entry.actor}\t{entry.action}\t{where}\t{target}\t{seq}".rstrip(), file=out)
    if more:
        print(f"(older entries left out: use --limit {args.limit * 2})", file=out)
