"""The account service: registration, login, logout, password changes, and token checks.

Tokens name a server-side login session (``Claims.login_id``), so a token
stops working the moment its session ends: logout ends one, a password change
or an account removal ends all of a user's. Sessions and accounts are kept in
the store; this class keeps the in-memory view (``Accounts``) that every
handshake is checked against, and reads the store's ``auth_events`` every
second so that changes made by the admin CLI in another process apply at once.

Password hashing takes tens of milliseconds of CPU, so it runs on the hash
pool's threads, and every attempt is counted by the throttle before its hash
(``throttle.py``: per client address, per user name, and hashes in flight).
A name logs in to its account in any case (``Alice`` to ``alice``); new names
must be free in every case (``names.py``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from functools import partial
from typing import Protocol, TypeVar

from .accounts import GUEST_PREFIX, Account, Accounts, Login
from .names import NEW_NAME_PATTERN, NEW_NAME_RULE, name_key
from .passwords import PASSWORD_MAX_CHARS, hash_password, password_problem, verify_password
from .protocol import USERNAME_PATTERN
from .settings import Settings
from .store import (
    ADMIN_GRANTED,
    ADMIN_REVOKED,
    LOGIN_REVOKED,
    PASSWORD_CHANGED,
    USER_ADDED,
    USER_DISABLED,
    USER_ENABLED,
    USER_REMOVED,
    AccountStore,
    AuthEvent,
    Snapshot,
    StoreError,
)
from .text_cleaning import encodable
from .throttle import LOGIN, REGISTER, Attempt, HashPool, Throttle, Throttled
from .tokens import Claims, TokenError, TokenProblem, TokenSigner

log = logging.getLogger("tornado_chat.identity")

R = TypeVar("R")
# Close-frame reasons for connections whose login session ended.
CLOSE_LOGGED_OUT = "logged out"
CLOSE_PASSWORD_CHANGED = "password changed"
CLOSE_ACCOUNT_REMOVED = "account removed"
CLOSE_ACCOUNT_DISABLED = "account disabled"
# Expired login sessions are dropped from memory this often.
PRUNE_INTERVAL_S = 600.0
USERNAME_RULE = "1-32 characters of A-Z, a-z, 0-9, _, . and -"


class AuthError(Exception):
    """An account request refused: HTTP ``status``, a stable ``code``, a message for people."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    @classmethod
    def unavailable(cls, message: str) -> AuthError:
        """The store failed: 503, come back in a second."""
        return cls(503, "unavailable", message, 1.0)


def _refusal(refused: Throttled) -> AuthError:
    return AuthError(refused.status, refused.code, refused.message, refused.retry_after_s)


class AccountListener(Protocol):
    """What the chat server does when accounts change."""

    def user_added(self, name: str) -> None: ...

    def user_removed(self, name: str) -> None: ...

    def admin_changed(self, name: str, admin: bool) -> None:
        """The user became a server admin (``admin``) or stopped being one."""
        ...

    def logins_ended(self, user: str, login_ids: set[str] | None, reason: str) -> None:
        """Close the user's connections made with these login sessions (all of them when None).

        ``reason`` is the close frame's reason: ``logged out``, ``password changed``, ``account removed`` or
        ``account disabled``.
        """
        ...


class AccountService:
    """Accounts and login sessions of one server."""

    def __init__(
        self,
        settings: Settings,
        store: AccountStore,
        signer: TokenSigner,
        listener: AccountListener,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = store
        self.signer = signer
        self.listener = listener
        self.clock = clock
        self.monotonic = monotonic
        self.accounts = Accounts()
        self.throttle = Throttle(
            settings.login_attempts_per_min, settings.registrations_per_hour, settings.login_delay_max_s
        )
        self.hashes = HashPool(settings.max_hashes_queued)
        self.last_event_id = 0
        self._pruned_at = monotonic()

    def restore(self, snapshot: Snapshot) -> None:
        disabled = snapshot.moderation.disabled
        for row in snapshot.accounts:
            if not row.removed:
                self.accounts.add(Account(row.name, row.password_hash, row.guest, row.name in disabled))
        for login in snapshot.logins:
            self.accounts.open_login(Login(login.login_id, login.user, login.expires))
        self.last_event_id = snapshot.last_auth_event

    def close(self) -> None:
        self.hashes.shutdown()

    def is_guest(self, user: str) -> bool:
        account = self.accounts.accounts.get(user)
        return account is not None and account.guest

    # ------------------------------------------------------------ tokens

    def authenticate(self, token: str | None) -> Claims:
        """The claims of a valid token whose login session is still open; raises ``TokenError``."""
        now = self.clock()
        claims = self.signer.verify(token, now)
        if not self.accounts.valid(claims.login_id, claims.user, now):
            raise TokenError(TokenProblem.REVOKED)
        return claims

    async def _open_login(self, user: str) -> tuple[str, Claims]:
        login_id = secrets.token_urlsafe(16)
        token, claims = self.signer.issue(user, login_id, self.clock(), self.settings.token_ttl_s)
        try:
            await self.store.open_login(login_id, user, claims.expires)
        except StoreError:
            raise AuthError.unavailable("logging in is unavailable; try again") from None
        self.accounts.open_login(Login(login_id, user, claims.expires))
        return token, claims

    # ------------------------------------------------------------ accounts

    @staticmethod
    def _check_name(username: object) -> str:
        if not isinstance(username, str) or not USERNAME_PATTERN.fullmatch(username):
            raise AuthError(400, "bad_username", f"username must be {USERNAME_RULE}")
        return username

    @staticmethod
    def _check_new_name(username: object) -> str:
        """A name for a new account: the stricter rule, and not a guest's in any case."""
        if not isinstance(username, str) or not NEW_NAME_PATTERN.fullmatch(username):
            raise AuthError(400, "bad_username", f"username must be {NEW_NAME_RULE}")
        if name_key(username).startswith(GUEST_PREFIX):
            raise AuthError(400, "bad_username", f"names starting with {GUEST_PREFIX!r} are for guests")
        return username

    def _begin(self, kind: str, address: str, key: str | None) -> Attempt:
        """Count an attempt before any hash; ``AuthError`` (429) when the throttle refuses it."""
        try:
            return self.throttle.begin(kind, address, key, self.monotonic())
        except Throttled as refused:
            raise _refusal(refused) from None

    async def _hash(self, work: Callable[[], R]) -> R:
        """Run a password hash on the hash pool; ``AuthError`` (503 busy) when it is full."""
        try:
            return await self.hashes.run(work)
        except Throttled as refused:
            raise _refusal(refused) from None

    async def _password_matches(self, address: str, name: str, password: str) -> Account | None:
        """The account when ``password`` is its password (checked under the throttle), else None."""
        attempt = self._begin(LOGIN, address, name_key(name))
        account: Account | None = None
        try:
            if attempt.delay_s > 0:
                await asyncio.sleep(attempt.delay_s)
            found = self.accounts.find(name)
            stored_hash = found.password_hash if found is not None and not found.guest else None
            if await self._hash(partial(verify_password, password, stored_hash)):
                account = found
        finally:
            self.throttle.end(attempt, account is not None)
        return account

    async def register(self, username: object, password: object, address: str) -> tuple[str, Claims]:
        """Create an account with a password and log it in."""
        if self.settings.registration != "open":
            raise AuthError(403, "registration_closed", "accounts are created by the administrator here")
        name = self._check_new_name(username)
        password = _usable_password(password)
        if self.accounts.find(name) is not None:
            try:
                self.throttle.probe(address, self.monotonic())
            except Throttled as refused:
                raise _refusal(refused) from None
            raise AuthError(409, "username_taken", "that name is taken")
        attempt = self._begin(REGISTER, address, None)
        created = False
        try:
            password_hash = await self._hash(partial(hash_password, password))
            created = await self._create(name, password_hash, guest=False)
        finally:
            self.throttle.end(attempt, created)
        if not created:
            raise AuthError(409, "username_taken", "that name is taken")
        return await self._open_login(name)

    async def _create(self, name: str, password_hash: str | None, guest: bool) -> bool:
        try:
            created = await self.store.create_user(name, password_hash, guest)
        except StoreError:
            raise AuthError.unavailable("accounts are unavailable; try again") from None
        if created:
            self.accounts.add(Account(name, password_hash, guest))
            self.listener.user_added(name)
        return created

    async def login(self, username: object, password: object, address: str) -> tuple[str, Claims]:
        """Log in with a password, or as a guest (no password) when guests are allowed."""
        name = self._check_name(username)
        if password is None:
            return await self._login_guest(name)
        password = _given_password(password, "password must be a string of valid Unicode")
        account = await self._password_matches(address, name, password)
        if account is None:
            raise AuthError(401, "bad_credentials", "wrong user name or password")
        # Only the right password learns that the account is disabled; a wrong one was a failure like any other.
        if account.disabled:
            raise AuthError(403, "account_disabled", "this account is disabled; ask an administrator")
        return await self._open_login(account.name)

    async def _login_guest(self, name: str) -> tuple[str, Claims]:
        if not self.settings.allow_guests:
            raise AuthError(400, "password_required", "a password is required (guest logins are off)")
        guest_name = name if name_key(name).startswith(GUEST_PREFIX) else GUEST_PREFIX + name
        if len(guest_name) > 32:
            raise AuthError(400, "bad_username", f"guest names are at most {32 - len(GUEST_PREFIX)} characters")
        # A guest has no password, so its name is its only credential: once taken, it stays taken,
        # or anyone could log in as an existing guest and read its conversations.
        # Guests are for demos and load tests (thousands from one address): not limited like registrations.
        if self.accounts.find(guest_name) is not None or not await self._create(guest_name, None, guest=True):
            raise AuthError(409, "username_taken", "that guest name is taken; pick another")
        return await self._open_login(guest_name)

    async def logout(self, claims: Claims) -> None:
        """End the login session of ``claims`` and close the connections made with it."""
        try:
            await self.store.revoke_login(claims.login_id)
        except StoreError:
            raise AuthError.unavailable("logout failed; try again") from None
        if self.accounts.revoke(claims.login_id) is not None:
            self.listener.logins_ended(claims.user, {claims.login_id}, CLOSE_LOGGED_OUT)

    async def change_password(
        self, claims: Claims, password: object, new_password: object, address: str
    ) -> tuple[str, Claims]:
        """Replace the password; every login session of the user ends, and the caller gets a new one.

        The current password is checked under the same throttle as a login: a stolen token is no way to
        guess it faster.
        """
        account = self.accounts.accounts.get(claims.user)
        if account is None or account.guest:
            raise AuthError(400, "no_password", "guests have no password to change")
        password = _given_password(password, "give the current password")
        new_password = _usable_password(new_password)
        if await self._password_matches(address, claims.user, password) is None:
            raise AuthError(401, "bad_credentials", "the current password is wrong")
        new_hash = await self._hash(partial(hash_password, new_password))
        try:
            await self.store.set_password(claims.user, new_hash)
        except StoreError:
            raise AuthError.unavailable("the password was not changed; try again") from None
        self._password_changed(claims.user, new_hash)
        return await self._open_login(claims.user)

    async def disable(self, name: str, actor: str) -> bool:
        """Disable an account at once (an admin's ``disable`` frame): its tokens die and its sockets close.

        False when there is no such account or it was disabled already; raises ``StoreError``.
        """
        if not await self.store.set_disabled(name, True, actor):
            return False
        self._disabled(name, True)
        return True

    def _disabled(self, name: str, disabled: bool) -> None:
        account = self.accounts.accounts.get(name)
        if account is None or account.disabled == disabled:
            return
        account.disabled = disabled
        if disabled:
            self.accounts.revoke_user(name)
            self.listener.logins_ended(name, None, CLOSE_ACCOUNT_DISABLED)

    def _password_changed(self, user: str, new_hash: str | None) -> None:
        account = self.accounts.accounts.get(user)
        if account is not None and new_hash is not None:
            account.password_hash = new_hash
        self.accounts.revoke_user(user)
        self.listener.logins_ended(user, None, CLOSE_PASSWORD_CHANGED)

    # ------------------------------------------------------------ changes from other processes

    async def sync(self) -> None:
        """Apply account changes recorded since the last call (the admin CLI writes them)."""
        events = await self.store.auth_events_after(self.last_event_id)
        for event in events:
            await self._apply(event)
            self.last_event_id = event.event_id
        if self.monotonic() - self._pruned_at > PRUNE_INTERVAL_S:
            self._pruned_at = self.monotonic()
            self.accounts.prune(self.clock())

    async def _apply(self, event: AuthEvent) -> None:
        if event.kind == LOGIN_REVOKED and event.login_id is not None:
            if self.accounts.revoke(event.login_id) is not None:
                self.listener.logins_ended(event.user, {event.login_id}, CLOSE_LOGGED_OUT)
        elif event.kind == PASSWORD_CHANGED:
            row = await self.store.account(event.user)
            account = self.accounts.accounts.get(event.user)
            if row is not None and account is not None and row.password_hash == account.password_hash:
                # This server made the change (change_password) and has applied it already; applying it
                # again would also end the login session it has just opened for the caller.
                return
            self._password_changed(event.user, row.password_hash if row is not None else None)
        elif event.kind == USER_REMOVED:
            if event.user in self.accounts.accounts:
                self.accounts.remove(event.user)
                self.listener.logins_ended(event.user, None, CLOSE_ACCOUNT_REMOVED)
                self.listener.user_removed(event.user)
        elif event.kind in (USER_DISABLED, USER_ENABLED):
            self._disabled(event.user, event.kind == USER_DISABLED)
        elif event.kind in (ADMIN_GRANTED, ADMIN_REVOKED):
            self.listener.admin_changed(event.user, event.kind == ADMIN_GRANTED)
        elif event.kind == USER_ADDED and event.user not in self.accounts.accounts:
            row = await self.store.account(event.user)
            if row is not None and not row.removed:
                self.accounts.add(Account(row.name, row.password_hash, row.guest))
                self.listener.user_added(row.name)


def _usable_password(password: object) -> str:
    """``password`` when it can be an account's password; ``AuthError`` 400 ``bad_password`` saying why not."""
    if (problem := password_problem(password)) is not None or not isinstance(password, str):
        raise AuthError(400, "bad_password", problem or "password must be a string")
    return password


def _given_password(password: object, problem: str) -> str:
    """``password`` when it can be checked against a stored hash (a string of at most ``PASSWORD_MAX_CHARS``
    with a UTF-8 form); ``AuthError`` 400 ``bad_password`` saying ``problem`` otherwise. Unlike a new
    password, a short one is checked (and fails) like any other."""
    if not isinstance(password, str) or len(password) > PASSWORD_MAX_CHARS or not encodable(password):
        raise AuthError(400, "bad_password", problem)
    return password
