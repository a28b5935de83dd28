"""The remote gateway: FastAPI routes under ``/api/v1``, users, roles, tokens, audit log."""

from remotelab.api.app import API_PREFIX, Gateway, LabService, create_app
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
from remotelab.api.dashboard import DASHBOARD_PATH, dashboard_url

__all__ = [
    "API_PREFIX",
    "DASHBOARD_PATH",
    "AuditEntry",
    "AuthStore",
    "Gateway",
    "LabService",
    "NewToken",
    "Principal",
    "Role",
    "TokenInfo",
    "User",
    "create_app",
    "dashboard_url",
    "default_auth_path",
]
