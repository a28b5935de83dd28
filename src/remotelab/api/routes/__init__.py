"""The gateway's routes under ``/api/v1``, one module per resource; who may call each is
checked in its handler, in the open.

Reading (labs, devices, plans, experiments, runs, live updates) needs any role on the lab;
submitting needs ``researcher``; researchers cancel, edit, defer and answer only their own
experiments; approving, reordering, prioritising, cancelling anyone's and lab control need
``manager``; researchers add and remove their own notification subscriptions (managers see
and remove the lab's); the audit log needs ``manager``; users and tokens need ``admin``.

=================  ==========================================================
module             routes
=================  ==========================================================
``users``          who am I, users, tokens
``labs``           labs, their devices, samples and reservations
``plans``          the plans of a lab
``experiments``    the experiment queue: submit, edit, move, approve, answer…
``control``        lab control: hold, release, pause, resume, stop, abort (lab-wide
                   or of one experiment)
``live``           live updates (Server-Sent Events)
``runs``           stored runs, their data, plots and integrity check
``notify``         notification subscriptions: list, add, remove, test
``audit``          the audit log
=================  ==========================================================
"""

from __future__ import annotations

from fastapi import APIRouter

from remotelab.api.routes import (
    audit,
    control,
    experiments,
    labs,
    live,
    notify,
    plans,
    runs,
    users,
)

#: the resources' modules, in the order their routes appear in the OpenAPI document
MODULES = (users, labs, plans, experiments, control, live, runs, notify, audit)
#: every route of the gateway (the app mounts it under ``/api/v1``): the modules' routes
#: themselves, so ``router.routes`` lists each operation (FastAPI includes routers lazily)
router = APIRouter(routes=[route for module in MODULES for route in module.router.routes])

__all__ = ["router"]
