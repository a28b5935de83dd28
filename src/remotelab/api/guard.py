"""Who knocks at the gateway: failed authentications slowed and logged, tokens used from a
new address noted.

- An address that failed to authenticate ``REMOTELAB_AUTH_FAILURES`` times (default 10)
  within a minute is answered 429 with ``Retry-After`` until the oldest of those failures is
  a minute old, whatever token it sends then.
- Failed authentications go to the audit log as ``auth.failed``, at most one row per address
  per minute (with how many failures it stands for), so a flood cannot fill the log.
- The first use of a token from an address it was never used from is logged as
  ``token.new_address`` (addresses are remembered in the user database).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from remotelab.api.auth import AuthStore, Principal
from remotelab.errors import AuthenticationError, TooManyAttemptsError

#: the window over which failures are counted (s)
WINDOW = 60.0


@dataclass
class _Address:
    failures: deque[float] = field(default_factory=deque)
    logged_at: float = float("-inf")
    unlogged: int = 0


class FailedLogins:
    """Failures to authenticate, per address, over the last :data:`WINDOW` seconds."""

    def __init__(self, limit: int, *, window: float = WINDOW):
        self.limit, self.window = limit, window
        self._by: dict[str, _Address] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str, now: float | None = None) -> float:
        """Seconds ``address`` must wait before trying again (0: it may try now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._by.get(address)
            if entry is None:
                return 0.0
            self._expire(entry, now)
            if len(entry.failures) < self.limit:
                return 0.0
            return max(0.0, entry.failures[0] + self.window - now)

    def failed(self, address: str, now: float | None = None) -> int:
        """Count one failure; how many failures to log now (0: one was logged less than a
        window ago; the next row will count these too)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._by.setdefault(address, _Address())
            self._expire(entry, now)
            entry.failures.append(now)
            entry.unlogged += 1
            if now - entry.logged_at < self.window:
                return 0
            entry.logged_at, count, entry.unlogged = now, entry.unlogged, 0
            if len(self._by) > 10_000:  # forget addresses quiet for a window
                for key in [k for k, v in self._by.items() if not v.failures]:
                    del self._by[key]
            return count

    def _expire(self, entry: _Address, now: float) -> None:
        while entry.failures and entry.failures[0] <= now - self.window:
            entry.failures.popleft()


class Guard:
    """Authenticates a request's token through ``auth``, with the checks of this module."""

    def __init__(self, auth: AuthStore, *, limit: int):
        self.auth = auth
        self.failures = FailedLogins(limit)

    def authenticate(self, token: str | None, address: str) -> Principal:
        """The principal of ``token`` sent from ``address``; :class:`TooManyAttemptsError`
        while the address is slowed, :class:`AuthenticationError` for a bad token."""
        wait = self.failures.retry_after(address)
        if wait > 0:
            raise TooManyAttemptsError(
                f"too many failed authentications from {address}; try again in {wait:.0f} s",
                retry_after=wait,
            )
        try:
            who = self.auth.authenticate(token)
        except AuthenticationError as exc:
            count = self.failures.failed(address)
            if count:
                self.auth.record(
                    actor="-", role="-", action="auth.failed", status=401, client=address,
                    detail={"failures": count, "reason": str(exc)},
                )  # fmt: skip
            raise
        if who.token_id and self.auth.note_address(who.token_id, address):
            self.auth.record(
                actor=who.user, role=who.role.value, action="token.new_address", status=200,
                target=who.token_id, client=address,
            )  # fmt: skip
        return who


__all__ = ["WINDOW", "FailedLogins", "Guard"]
