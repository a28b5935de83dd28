"""The remote gateway: FastAPI routes under ``/api/v1``, users, roles, tokens, audit log."""

from remotelab.api.auth import (
    AuditEntry,
    AuthStore,
    NewToken,
    Principal,
    Role,
    TokenInfo,
    User,
    default_auth_path,
)

__all__ = [
    "AuditEntry",
    "AuthStore",
    "NewToken",
    "Principal",
    "Role",
    "TokenInfo",
    "User",
    "default_auth_path",
]
