"""Where notifications go: a :class:`Subscription` (an apprise URL, the events it wants, whose
it is), the check of an apprise URL, and its masked form for lists and the audit log.

An apprise URL names a service and carries its credentials (``mailto://user:pass@smtp…``,
``slack://T…/B…/…``, ``json://host/path``): it is checked by apprise itself when a
subscription is made, and shown only masked (:func:`mask_url`).
"""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remotelab.errors import NotificationError
from remotelab.notify.events import LAB_WIDE, SUBSCRIBABLE, Event, EventKind, now

#: query arguments whose values are shown unmasked (addresses and options, not secrets)
PLAIN_ARGS = frozenset(
    {"from", "to", "cc", "bcc", "name", "smtp", "mode", "reply", "method", "format", "user"}
)
SECRET = re.compile(r"token|key|secret|pass|auth|sig|apikey|webhook", re.IGNORECASE)


def _plugin(url: str) -> object | None:
    import apprise

    try:
        return apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception:
        return None


def check_url(url: str) -> str:
    """``url`` if apprise can notify through it; :class:`NotificationError` saying why not."""
    url = (url or "").strip()
    if "://" not in url:
        raise NotificationError(
            f"{mask_url(url, checked=False)!r} is not an apprise URL (SCHEMA://…, e.g. "
            "mailto://user:password@smtp.example.org?to=me@example.org or json://host/path)"
        )
    if _plugin(url) is None:
        schema = url.split("://", 1)[0].lower()
        why = (
            f"not a valid {schema}:// URL (see its page in apprise's documentation)"
            if schema in known_schemas()
            else f"apprise has no service {schema!r}"
        )
        raise NotificationError(
            f"apprise cannot notify through {mask_url(url, checked=False)!r}: {why}; "
            "the URL forms: https://github.com/caronc/apprise/wiki"
        )
    return url


def known_schemas() -> set[str]:
    """The URL schemas apprise serves here (``mailto``, ``json``, ``slack``, …)."""
    try:
        from apprise.manager_plugins import NotificationManager

        return {str(s).lower() for s in NotificationManager().schemas()}
    except Exception:  # pragma: no cover - another apprise layout
        return set()


def mask_url(url: str, *, checked: bool = True) -> str:
    """``url`` with its secrets masked: the password, the tokens apprise marks private, and
    query values that may be secrets. Only the query arguments the URL itself has are kept."""
    plugin = _plugin(url) if checked else None
    private = getattr(plugin, "url", None)
    shown = url
    if private is not None:
        try:
            shown = str(private(privacy=True))
        except Exception:
            shown = url
    try:
        parts = urlsplit(shown)
        given = {k.lower() for k, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
        query = [
            (k, v if k.lower() in PLAIN_ARGS and not SECRET.search(k) else "****")
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k.lower() in given
        ]
        netloc = parts.netloc
        if "@" in netloc:
            user, host = netloc.rsplit("@", 1)
            if ":" in user:
                user = user.split(":", 1)[0] + ":****"
            netloc = f"{user}@{host}"
        path = parts.path if plugin is not None else re.sub(r"[^/]{12,}", "****", parts.path)
        return urlunsplit((parts.scheme, netloc, path, urlencode(query, safe="@*"), ""))
    except ValueError:
        return "****"


def new_id() -> str:
    return uuid4().hex[:8]


class Subscription(BaseModel):
    """One target of a lab's notifications: an apprise ``url`` and the ``events`` it wants.

    ``owner`` is the user whose subscription it is (None: the lab file's, which receives
    every event it names); a user's receives the events of their own experiments, and, if
    ``role`` is manager (or admin), the lab-wide ones (:data:`LAB_WIDE`) too.
    """

    model_config = ConfigDict(extra="ignore")

    id: str = Field(default_factory=new_id)
    lab: str
    url: str
    events: list[EventKind] = Field(default_factory=lambda: list(SUBSCRIBABLE))
    owner: str | None = None
    role: str = "researcher"
    created: datetime = Field(default_factory=now)

    @field_validator("events")
    @classmethod
    def _subscribable(cls, value: list[EventKind]) -> list[EventKind]:
        if EventKind.test in value:
            raise ValueError("'test' is not an event to subscribe to")
        return list(dict.fromkeys(value)) or list(SUBSCRIBABLE)

    @property
    def manager(self) -> bool:
        return self.role in ("manager", "admin")

    def wants(self, event: Event) -> bool:
        """Whether this subscription receives ``event``."""
        if event.lab != self.lab or event.kind not in self.events:
            return False
        if self.owner is None:
            return True
        if event.submitter and event.submitter == self.owner:
            return True
        return self.manager and event.kind in LAB_WIDE

    def shown(self) -> dict[str, object]:
        """The subscription as lists and the audit log show it: its URL masked."""
        return {**self.model_dump(mode="json"), "url": mask_url(self.url)}


__all__ = ["Subscription", "check_url", "mask_url"]
