"""``tornado-chat user ...``: manage accounts in the data directory, with or without the server running.

Changes go straight into the SQLite database, in one transaction each, and
are recorded in ``auth_events``; a running server picks them up within a
second (a password change or removal disconnects the user's open sockets).
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path
from typing import TextIO

from . import sqlite_accounts
from .accounts import GUEST_PREFIX
from .names import NEW_NAME_PATTERN, NEW_NAME_RULE, name_key
from .passwords import hash_password, password_problem
from .protocol import USERNAME_PATTERN
from .sqlite_schema import DB_FILE, NameCollisions, connect, migrate
from .store import StoreError


class AdminError(Exception):
    """A user command that cannot be done; the message is one line for the terminal."""


def add_user_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = subparsers.add_parser("user", help="manage accounts: add, remove, passwd, list")
    user.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS, help="the server's data directory")
    actions = user.add_subparsers(dest="action", required=True)
    for name, text in (("add", "create an account"), ("passwd", "set a new password (ends all its sessions)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("username")
        action.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input instead of asking"
        )
    remove = actions.add_parser("remove", help="close an account for good (its name is never reused)")
    remove.add_argument("username")
    actions.add_parser("list", help="list accounts")


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
        try:
            migrate(connection)
        except NameCollisions as exc:
            # The way out of this is "user remove", which the schema before the migration supports.
            if args.action not in ("list", "remove"):
                raise AdminError(str(exc)) from None
        except StoreError as exc:
            raise AdminError(str(exc)) from None
        now = time.time()
        if args.action == "list":
            for row in sqlite_accounts.accounts(connection):
                state = "removed" if row.removed else "guest" if row.guest else "active"
                print(f"{row.name}\t{state}", file=out)
            return
        name = args.username
        if not USERNAME_PATTERN.fullmatch(name):
            raise AdminError(f"{name!r} is not a valid user name")
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
            elif args.action == "passwd":
                if not sqlite_accounts.set_password(connection, name, password_hash, now):
                    raise AdminError(f"no account called {name} that has a password")
            elif args.action == "remove" and not sqlite_accounts.remove_user(connection, name, now):
                raise AdminError(f"no account called {name}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        print(f"{args.action}: {name}: done", file=out)
    finally:
        connection.close()
