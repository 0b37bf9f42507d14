"""Who has an account and which login sessions are open: the server's in-memory view.

Pure code. The store keeps the same facts on disk, and the admin CLI changes
them there; ``account_service.AccountService`` keeps this view in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .names import name_key

# Guest names carry this prefix, which registered names may not use, so a guest is always recognisable.
GUEST_PREFIX = "guest-"


@dataclass(slots=True)
class Account:
    """An account; a ``disabled`` one keeps its name but cannot log in, and its tokens are void."""

    name: str
    password_hash: str | None
    guest: bool = False
    disabled: bool = False


@dataclass(slots=True)
class Login:
    """A server-side login session, named by the ``login_id`` inside a token."""

    login_id: str
    user: str
    expires: float


@dataclass(slots=True)
class Accounts:
    """Who has an account, and which login sessions are still valid."""

    accounts: dict[str, Account] = field(default_factory=dict)
    logins: dict[str, Login] = field(default_factory=dict)
    # name_key(name) -> name: the account a name in any case logs in to.
    by_key: dict[str, str] = field(default_factory=dict)

    def add(self, account: Account) -> None:
        self.accounts[account.name] = account
        self.by_key[name_key(account.name)] = account.name

    def find(self, name: str) -> Account | None:
        """The account called ``name`` in any case (``Alice`` finds ``alice``), or None."""
        spelled = self.by_key.get(name_key(name))
        return self.accounts.get(spelled) if spelled is not None else None

    def remove(self, name: str) -> list[str]:
        """Forget a user; returns the login ids that were revoked with them."""
        if self.accounts.pop(name, None) is not None:
            self.by_key.pop(name_key(name), None)
        return self.revoke_user(name)

    def open_login(self, login: Login) -> None:
        self.logins[login.login_id] = login

    def revoke(self, login_id: str) -> Login | None:
        return self.logins.pop(login_id, None)

    def revoke_user(self, name: str) -> list[str]:
        """End every login session of ``name``; returns their ids."""
        gone = [login_id for login_id, login in self.logins.items() if login.user == name]
        for login_id in gone:
            del self.logins[login_id]
        return gone

    def valid(self, login_id: str, user: str, now: float) -> bool:
        """Whether a token's login session is open, belongs to ``user`` and has not expired."""
        login = self.logins.get(login_id)
        if login is None or login.user != user or login.expires <= now:
            return False
        account = self.accounts.get(user)
        return account is not None and not account.disabled

    def prune(self, now: float) -> int:
        """Drop expired login sessions; returns how many."""
        expired = [login_id for login_id, login in self.logins.items() if login.expires <= now]
        for login_id in expired:
            del self.logins[login_id]
        return len(expired)
