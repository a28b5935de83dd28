"""Notifications: telling people what needs them (an experiment failed or crashed, one waits
for approval, a plan asks the operator, the lab is held, a worker is lost, a watchdog fired),
by e-mail, chat or webhook through apprise.

>>> notifier = Notifier("lab1", targets=[Subscription(lab="lab1", url="json://host/hook")])
>>> notifier.send(Event(kind=EventKind.worker_lost, lab="lab1", worker="w1", message="…"))

The lab file's ``notify:`` section and each user's subscriptions (``remotelab notify add``,
stored in Prefect by :mod:`remotelab.queue.subscriptions`) say who receives what.
"""

from remotelab.notify.events import LAB_WIDE, SUBSCRIBABLE, Event, EventKind
from remotelab.notify.notifier import (
    Delivery,
    Notifier,
    NullNotifier,
    attach,
    deliver_one,
    notifier_of,
)
from remotelab.notify.targets import Subscription, check_url, mask_url

__all__ = [
    "LAB_WIDE",
    "SUBSCRIBABLE",
    "Delivery",
    "Event",
    "EventKind",
    "Notifier",
    "NullNotifier",
    "Subscription",
    "attach",
    "check_url",
    "deliver_one",
    "mask_url",
    "notifier_of",
]
