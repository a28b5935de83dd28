"""Who a lab's notifications go to, stored where every part of the lab can read them.

The lab file's ``notify:`` targets are the lab's own; each user adds their own subscriptions
at run time (``remotelab notify add``), each one a Prefect variable
``remotelab_notify_<lab>_<id>`` whose value is a :class:`~remotelab.notify.Subscription`
(written by the gateway or the CLI, read by the worker and the gateway when they notify).
:class:`LabSubscriptions` adds, lists, removes and tests them with the caller's rights: a
user manages their own; a manager sees (and may remove) the lab's. :func:`lab_notifier` is
the :class:`~remotelab.notify.Notifier` of a lab: its file's targets and these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from remotelab.errors import NotificationError, PermissionDeniedError, SubscriptionNotFound
from remotelab.notify import Delivery, Event, EventKind, Notifier, Subscription, check_url

if TYPE_CHECKING:
    from remotelab.queue.prefect_lab import LabOnPrefect

VARIABLE_PREFIX = "remotelab_notify_"
#: the ids of the lab file's targets: ``lab-1``, ``lab-2``… in the file's order
LAB_FILE_PREFIX = "lab-"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text.lower())


def variable_name(lab: str, subscription_id: str) -> str:
    """The Prefect variable that holds a subscription of ``lab``."""
    return _slug(f"{VARIABLE_PREFIX}{lab}_{subscription_id}")


def lab_prefix(lab: str) -> str:
    """The prefix of the variables of ``lab``'s subscriptions."""
    return _slug(f"{VARIABLE_PREFIX}{lab}_")


def parse(value: Any) -> Subscription | None:
    """The subscription a variable's value holds, or None."""
    if not isinstance(value, dict):
        return None
    try:
        return Subscription.model_validate(value)
    except ValidationError:
        return None


def lab_file_targets(lab: Any) -> list[Subscription]:
    """The lab file's ``notify:`` targets as subscriptions (ids ``lab-1``, ``lab-2``…)."""
    spec = getattr(lab, "spec", None)
    targets = getattr(spec, "notify", None) or []
    name = lab if isinstance(lab, str) else lab.name
    return [
        Subscription(id=f"{LAB_FILE_PREFIX}{n}", lab=name, url=t.url, events=t.events)
        for n, t in enumerate(targets, 1)
    ]


def is_manager(role: str) -> bool:
    return role in ("manager", "admin")


def kinds(events: Iterable[str] | None) -> list[EventKind]:
    """Event kinds by name (none: every one); :class:`NotificationError` naming a bad one."""
    out: list[EventKind] = []
    for name in events or ():
        try:
            kind = EventKind(str(name).strip().lower().replace("-", "_"))
        except ValueError:
            kind = None
        if kind is None or kind == EventKind.test:
            known = ", ".join(k.value for k in EventKind if k != EventKind.test)
            raise NotificationError(f"unknown event {name!r}; use one of {known}")
        out.append(kind)
    return out


class LabSubscriptions:
    """The notification subscriptions of one lab: its file's and its users'."""

    def __init__(self, lab: Any, prefect: LabOnPrefect):
        self.lab = lab
        self.name: str = lab if isinstance(lab, str) else lab.name
        self.prefect = prefect

    def stored(self) -> list[Subscription]:
        """The users' subscriptions, as stored in Prefect."""
        return self.prefect.subscriptions()

    def all(self) -> list[Subscription]:
        """Every target: the lab file's, then the users'."""
        return [*lab_file_targets(self.lab), *self.stored()]

    def visible(self, user: str, role: str) -> list[Subscription]:
        """What ``user`` may see: their own; a manager: all of the lab's."""
        if is_manager(role):
            return self.all()
        return [s for s in self.stored() if s.owner == user]

    def add(
        self, url: str, events: Iterable[str] | None = None, *, user: str, role: str
    ) -> Subscription:
        """A new subscription of ``user``'s (URL checked by apprise first; one per URL)."""
        sub = Subscription(
            lab=self.name, url=check_url(url), events=kinds(events), owner=user, role=role
        )
        same = next((s for s in self.stored() if s.owner == user and s.url == sub.url), None)
        if same is not None:
            raise NotificationError(
                f"you subscribe through this URL already ({same.id}); remove it first to "
                "change its events (remotelab notify remove ID)"
            )
        self.prefect.subscribe(sub)
        return sub

    def get(self, subscription_id: str, *, user: str, role: str) -> Subscription:
        """One subscription ``user`` may see (:class:`SubscriptionNotFound` if none)."""
        for sub in self.visible(user, role):
            if sub.id == subscription_id:
                return sub
        raise SubscriptionNotFound(
            f"no notification subscription {subscription_id!r} of yours in lab {self.name} "
            "(see 'remotelab notify list')"
        )

    def remove(self, subscription_id: str, *, user: str, role: str) -> Subscription:
        """Remove a subscription: one's own; a manager, anyone's (not the lab file's)."""
        sub = self.get(subscription_id, user=user, role=role)
        if sub.owner is None:
            raise PermissionDeniedError(
                f"{sub.id} is a target of lab {self.name}'s file: change its notify: section"
            )
        self.prefect.unsubscribe(sub.id)
        return sub

    def test(
        self, subscription_id: str | None, *, user: str, role: str, notifier: Notifier
    ) -> list[Delivery]:
        """Send a test notification now: to one subscription, or to all ``user`` sees."""
        subs = (
            [self.get(subscription_id, user=user, role=role)]
            if subscription_id
            else self.visible(user, role)
        )
        event = Event(
            kind=EventKind.test,
            lab=self.name,
            submitter=user,
            message=f"A test of lab {self.name}'s notifications, asked for by {user}.",
        )
        return notifier.deliver(event, subs)


def lab_notifier(lab: Any, prefect: LabOnPrefect) -> Notifier:
    """The notifier of ``lab``: its lab file's targets and its users' subscriptions."""
    name = lab if isinstance(lab, str) else lab.name
    return Notifier(name, targets=lab_file_targets(lab), subscriptions=prefect.subscriptions)


__all__ = [
    "LAB_FILE_PREFIX",
    "VARIABLE_PREFIX",
    "LabSubscriptions",
    "kinds",
    "lab_file_targets",
    "lab_notifier",
    "lab_prefix",
    "parse",
    "variable_name",
]
