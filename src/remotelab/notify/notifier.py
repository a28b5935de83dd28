"""Sending notifications through apprise, without ever holding up the sender.

:meth:`Notifier.send` queues an event and returns at once; a background thread finds who
wants it (the lab file's targets and the subscriptions of its source) and delivers to each
on a thread of its own, so a target that is down or slow delays nothing but itself. Failures
are logged, never raised. :meth:`Notifier.deliver` is the synchronous form (``remotelab
notify test``): it answers a :class:`Delivery` per target.

A process part that has no notifier passed to it finds the one its lab object was given with
:func:`attach` through :func:`notifier_of` (a no-op notifier if none was).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from remotelab.notify.events import Event, EventKind
from remotelab.notify.targets import Subscription, mask_url

log = logging.getLogger("remotelab.notify")

#: seconds one delivery may take before apprise gives up on it
DELIVERY_TIMEOUT = 15.0
#: events waiting to be delivered at most; more are dropped (and logged)
MAX_PENDING = 1000

SubscriptionSource = Callable[[], Iterable[Subscription]]


@dataclass(frozen=True)
class Delivery:
    """The outcome of one notification to one target (its URL masked)."""

    subscription: str
    url: str
    ok: bool
    error: str = ""


def _notify_type(kind: EventKind) -> str:
    if kind in (EventKind.experiment_failed, EventKind.experiment_crashed, EventKind.lab_held):
        return "failure"
    if kind in (EventKind.worker_lost, EventKind.watchdog_alert):
        return "warning"
    return "info"


def deliver_one(sub: Subscription, event: Event, timeout: float = DELIVERY_TIMEOUT) -> Delivery:
    """Notify ``sub`` of ``event`` through apprise, now; never raises."""
    import apprise

    shown = mask_url(sub.url)
    try:
        target = apprise.Apprise()
        if not target.add(sub.url):
            return Delivery(sub.id, shown, False, "apprise cannot use this URL")
        result: Any = target.notify(
            body=event.body(),
            title=event.title(),
            notify_type=_notify_type(event.kind),
            timeout=timeout,
        )
    except Exception as exc:
        return Delivery(sub.id, shown, False, f"{type(exc).__name__}: {exc}")
    if result:
        return Delivery(sub.id, shown, True)
    problems = [
        str(entry.message)
        for entry in getattr(result, "logs", lambda: ())()
        if str(getattr(entry, "level", "")).upper() in ("WARNING", "ERROR", "CRITICAL")
    ]
    why = problems[-1] if problems else "apprise could not deliver it"
    return Delivery(sub.id, shown, False, why.replace(sub.url, shown))


class Notifier:
    """The notifications of lab ``lab``: to ``targets`` (the lab file's) and to the
    subscriptions ``subscriptions()`` returns (read afresh for every event; a failure to
    read them is logged and the lab file's targets still served)."""

    def __init__(
        self,
        lab: str,
        *,
        targets: Sequence[Subscription] = (),
        subscriptions: SubscriptionSource | None = None,
        timeout: float = DELIVERY_TIMEOUT,
        max_pending: int = MAX_PENDING,
    ):
        self.lab = lab
        self.targets = list(targets)
        self.source = subscriptions
        self.timeout = timeout
        self._events: queue.Queue[Event | None] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._busy = 0  # events taken and deliveries running
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self.sent: list[Delivery] = []  #: the latest deliveries made by send() (for status)

    # -- who wants an event ----------------------------------------------------------------
    def subscriptions(self) -> list[Subscription]:
        """Every target: the lab file's, then the subscriptions of the source."""
        subs = list(self.targets)
        if self.source is not None:
            try:
                subs += list(self.source())
            except Exception as exc:
                log.warning(
                    "lab %s: could not read the notification subscriptions: %s", self.lab, exc
                )
        return subs

    def recipients(self, event: Event) -> list[Subscription]:
        """The targets that want ``event``."""
        return [sub for sub in self.subscriptions() if sub.wants(event)]

    # -- sending -----------------------------------------------------------------------------
    def send(self, event: Event) -> None:
        """Queue ``event`` for delivery and return at once (never raises)."""
        try:
            with self._lock:
                if self._closed:
                    log.warning("lab %s: notifier closed, not sent: %s", self.lab, event.title())
                    return
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="remotelab-notify", daemon=True
                    )
                    self._thread.start()
                self._busy += 1
            try:
                self._events.put_nowait(event)
            except queue.Full:
                self._done()
                log.warning(
                    "lab %s: too many notifications waiting; dropped: %s", self.lab, event.title()
                )
        except Exception as exc:  # pragma: no cover - a notification never breaks its sender
            log.warning("lab %s: could not queue a notification: %s", self.lab, exc)

    def deliver(self, event: Event, to: Iterable[Subscription] | None = None) -> list[Delivery]:
        """Deliver ``event`` now to ``to`` (default: its recipients); the outcome of each."""
        subs = self.recipients(event) if to is None else list(to)
        return [deliver_one(sub, event, self.timeout) for sub in subs]

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event sent has been delivered (or given up); whether it was."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Send no more; give what is queued up to ``timeout`` s to go out."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self.flush(timeout)
            self._events.put(None)
            thread.join(0.5)

    # -- the background thread ----------------------------------------------------------------
    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def _loop(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            try:
                for sub in self.recipients(event):
                    with self._lock:
                        self._busy += 1
                    threading.Thread(
                        target=self._deliver_quietly,
                        args=(sub, event),
                        name="remotelab-notify-send",
                        daemon=True,
                    ).start()
            except Exception as exc:
                log.warning("lab %s: could not send %s: %s", self.lab, event.title(), exc)
            finally:
                self._done()

    def _deliver_quietly(self, sub: Subscription, event: Event) -> None:
        try:
            done = deliver_one(sub, event, self.timeout)
            self.sent = [*self.sent[-99:], done]
            if done.ok:
                log.info("lab %s: notified %s of %s", self.lab, done.url, event.kind.value)
            else:
                log.warning(
                    "lab %s: could not notify %s of %s: %s",
                    self.lab,
                    done.url,
                    event.kind.value,
                    done.error,
                )
        finally:
            self._done()


class NullNotifier(Notifier):
    """A notifier that sends nothing (what :func:`notifier_of` gives a lab without one)."""

    def __init__(self, lab: str = ""):
        super().__init__(lab)

    def send(self, event: Event) -> None:
        return None


_ATTACHED: weakref.WeakKeyDictionary[Any, Notifier] = weakref.WeakKeyDictionary()


def attach(owner: Any, notifier: Notifier) -> None:
    """Make ``notifier`` the one :func:`notifier_of` finds for ``owner`` (a lab object)."""
    _ATTACHED[owner] = notifier


def notifier_of(owner: Any) -> Notifier:
    """The notifier attached to ``owner``, else one that sends nothing."""
    try:
        found = _ATTACHED.get(owner)
    except TypeError:  # not weakly referable
        found = None
    return found if found is not None else NullNotifier(str(getattr(owner, "name", "")))


__all__ = [
    "DELIVERY_TIMEOUT",
    "Delivery",
    "Notifier",
    "NullNotifier",
    "SubscriptionSource",
    "attach",
    "deliver_one",
    "notifier_of",
]
