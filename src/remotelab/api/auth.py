"""Users, roles, API tokens and the audit log of the remote gateway, in one SQLite file.

A token is shown once, when it is created (``rl_<id>_<secret>``); only its SHA-256 hash is
stored. Tokens are 256-bit random strings from :mod:`secrets`, so a plain hash is enough
(no salt or slow hash is needed against guessing). Every token belongs to a user; every user
has a role:

- ``observer``: read the labs, queues and data;
- ``researcher``: also submit experiments (the plans the lab allows researchers), and cancel,
  defer and answer their own;
- ``manager``: everything on their labs — approve, reorder, cancel anyone's, hold the lab;
- ``admin``: everything on every lab, plus users and tokens.

A user may be limited to some labs (``labs``); an empty list means every lab.
The audit log is append-only: triggers in the database refuse updates and deletes, and each
row is chained to the one before it by hash (:mod:`remotelab.api.audit_chain`), so a change
made around the triggers is found by :meth:`AuthStore.verify_audit`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field

from remotelab.api.audit_log import AuditEntry, AuditLog, add_chain_columns
from remotelab.errors import (
    AccountError,
    AccountExistsError,
    AuthenticationError,
    PermissionDeniedError,
    UnknownAccountError,
)
from remotelab.settings import private_dir, private_file

TOKEN_PREFIX = "rl_"
_TOKEN_RE = re.compile(r"^rl_([0-9a-f]{12})_[A-Za-z0-9_-]{20,}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
#: seconds between two writes of a token's ``last_used``
LAST_USED_RESOLUTION = 60.0


class Role(StrEnum):
    """What a user may do; each role may do everything the roles before it may."""

    observer = "observer"
    researcher = "researcher"
    manager = "manager"
    admin = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def at_least(self, other: Role | str) -> bool:
        return self.rank >= Role(other).rank


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise AccountError(
            f"unknown role {value!r}; roles are: {', '.join(r.value for r in Role)}"
        ) from None


class User(BaseModel):
    """A person (or a program) who holds tokens."""

    name: str
    role: Role
    labs: list[str] = Field(default_factory=list, description="labs they may use; empty: all")
    created: float = Field(description="epoch seconds")
    disabled: bool = False


class TokenInfo(BaseModel):
    """A token as listed: never its secret."""

    id: str = Field(description="public id, part of the token itself")
    user: str
    description: str = ""
    created: float
    revoked: float | None = None
    last_used: float | None = None


class NewToken(TokenInfo):
    """A token just created: ``token`` is shown this once and never stored."""

    token: str


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    user: str
    role: Role
    labs: tuple[str, ...] = ()
    token_id: str = ""

    def may_use(self, lab: str) -> bool:
        return self.role == Role.admin or not self.labs or lab in self.labs

    def require(self, role: Role, lab: str | None = None, *, action: str = "do this") -> None:
        """Raise :class:`PermissionDeniedError` unless the caller has ``role`` (on ``lab``)."""
        if lab is not None and not self.may_use(lab):
            raise PermissionDeniedError(f"user {self.user!r} has no access to lab {lab!r}")
        if not self.role.at_least(role):
            raise PermissionDeniedError(
                f"{action} needs the {role.value} role; user {self.user!r} is {self.role.value}"
            )


SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    labs TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name),
    hash TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    revoked REAL,
    last_used REAL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    lab TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    prev_hash TEXT NOT NULL DEFAULT '',
    hash TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS token_addresses (
    token TEXT NOT NULL,
    address TEXT NOT NULL,
    first_seen REAL NOT NULL,
    PRIMARY KEY (token, address)
);
CREATE INDEX IF NOT EXISTS audit_actor ON audit(actor);
CREATE INDEX IF NOT EXISTS audit_lab ON audit(lab);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def default_auth_path() -> Path:
    """``auth.sqlite`` in remotelab's data directory (``REMOTELAB_DATA_DIR``)."""
    from remotelab.settings import get_settings

    return get_settings().data_dir / "auth.sqlite"


class AuthStore(AuditLog):
    """Users, tokens and the audit log in one SQLite file (WAL; safe across threads)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_auth_path()
        try:
            private_dir(self.path.parent)
            private_file(self.path)
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(SCHEMA)
            add_chain_columns(self._conn)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise AccountError(f"cannot open the user database {self.path}: {exc}") from None
        self._lock = threading.RLock()
        self._used: dict[str, float] = {}
        self._addresses: set[tuple[str, str]] = set()  # (token, address) known to be stored

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AuthStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- users -------------------------------------------------------------------------------
    def add_user(self, name: str, role: Role | str, *, labs: list[str] | None = None) -> User:
        """Add a user; :class:`AccountError` if the name is taken or malformed."""
        if not _NAME_RE.match(name or ""):
            raise AccountError(
                f"bad user name {name!r}: use 1-64 letters, digits and . _ @ -, "
                "starting with a letter or digit"
            )
        role = parse_role(role) if isinstance(role, str) else role
        user = User(name=name, role=role, labs=sorted(set(labs or [])), created=time.time())
        try:
            self._q(
                "INSERT INTO users (name, role, labs, created) VALUES (?, ?, ?, ?)",
                (name, role.value, json.dumps(user.labs), user.created),
            )
        except sqlite3.IntegrityError:
            raise AccountExistsError(f"user {name!r} exists already") from None
        return user

    def user(self, name: str) -> User:
        rows = self._q(
            "SELECT name, role, labs, created, disabled FROM users WHERE name=?", (name,)
        )
        if not rows:
            raise UnknownAccountError(f"no user {name!r}")
        return self._user(rows[0])

    @staticmethod
    def _user(row: tuple) -> User:
        name, role, labs, created, disabled = row
        return User(
            name=name, role=Role(role), labs=json.loads(labs), created=created, disabled=disabled
        )

    def users(self) -> list[User]:
        rows = self._q("SELECT name, role, labs, created, disabled FROM users ORDER BY name")
        return [self._user(r) for r in rows]

    def set_role(self, name: str, role: Role | str) -> User:
        role = parse_role(role) if isinstance(role, str) else role
        self.user(name)
        self._q("UPDATE users SET role=? WHERE name=?", (role.value, name))
        return self.user(name)

    def set_disabled(self, name: str, disabled: bool = True) -> User:
        """Disable a user (every token stops working) or enable them again."""
        self.user(name)
        self._q("UPDATE users SET disabled=? WHERE name=?", (int(disabled), name))
        return self.user(name)

    # -- tokens ------------------------------------------------------------------------------
    def create_token(self, user: str, description: str = "") -> NewToken:
        """A new token for ``user``; its secret is in the result only."""
        self.user(user)
        while True:
            token_id = secrets.token_hex(6)
            token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
            created = time.time()
            try:
                self._q(
                    "INSERT INTO tokens (id, user, hash, description, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (token_id, user, hash_token(token), description, created),
                )
            except sqlite3.IntegrityError:
                continue  # an id collision: draw again
            return NewToken(
                id=token_id, user=user, description=description, created=created, token=token
            )

    def token(self, token_id: str) -> TokenInfo:
        rows = self._q(
            "SELECT id, user, description, created, revoked, last_used FROM tokens WHERE id=?",
            (token_id,),
        )
        if not rows:
            raise UnknownAccountError(f"no token {token_id!r}")
        return self._token(rows[0])

    @staticmethod
    def _token(row: tuple) -> TokenInfo:
        tid, user, description, created, revoked, last_used = row
        return TokenInfo(
            id=tid,
            user=user,
            description=description,
            created=created,
            revoked=revoked,
            last_used=last_used,
        )

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        sql = "SELECT id, user, description, created, revoked, last_used FROM tokens"
        args: tuple = ()
        if user is not None:
            sql += " WHERE user=?"
            args = (user,)
        return [self._token(r) for r in self._q(sql + " ORDER BY created", args)]

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Revoke a token for good (revoking twice keeps the first time)."""
        self.token(token_id)
        self._q(
            "UPDATE tokens SET revoked=? WHERE id=? AND revoked IS NULL", (time.time(), token_id)
        )
        return self.token(token_id)

    def authenticate(self, token: str | None) -> Principal:
        """The principal a token stands for; :class:`AuthenticationError` otherwise."""
        if not token:
            raise AuthenticationError(
                "no API token; send 'Authorization: Bearer <token>' (ask an admin for one)"
            )
        if not _TOKEN_RE.match(token):
            raise AuthenticationError("malformed API token; remotelab tokens look like rl_<id>_…")
        rows = self._q(
            "SELECT t.id, t.revoked, u.name, u.role, u.labs, u.disabled "
            "FROM tokens t JOIN users u ON u.name = t.user WHERE t.hash=?",
            (hash_token(token),),
        )
        if not rows:
            raise AuthenticationError("unknown API token")
        token_id, revoked, name, role, labs, disabled = rows[0]
        if revoked is not None:
            raise AuthenticationError(f"API token {token_id} was revoked")
        if disabled:
            raise AuthenticationError(f"user {name!r} is disabled")
        now = time.time()
        if now - self._used.get(token_id, 0.0) > LAST_USED_RESOLUTION:
            self._used[token_id] = now
            self._q("UPDATE tokens SET last_used=? WHERE id=?", (now, token_id))
        return Principal(
            user=name, role=Role(role), labs=tuple(json.loads(labs)), token_id=token_id
        )

    def note_address(self, token_id: str, address: str) -> bool:
        """Remember that ``token_id`` was used from ``address``; whether that was new."""
        if (token_id, address) in self._addresses:
            return False
        cur = self._q(
            "INSERT OR IGNORE INTO token_addresses (token, address, first_seen) "
            "VALUES (?, ?, ?) RETURNING token",
            (token_id, address, time.time()),
        )
        self._addresses.add((token_id, address))
        return bool(cur)

    def token_valid(self, token_id: str) -> bool:
        """Whether ``token_id`` still authenticates (not revoked, its user not disabled)."""
        rows = self._q(
            "SELECT t.revoked, u.disabled FROM tokens t JOIN users u ON u.name = t.user "
            "WHERE t.id=?",
            (token_id,),
        )
        return bool(rows) and rows[0][0] is None and not rows[0][1]


__all__ = [
    "AuditEntry",
    "AuthStore",
    "NewToken",
    "Principal",
    "Role",
    "TokenInfo",
    "User",
    "default_auth_path",
    "hash_token",
    "parse_role",
]
