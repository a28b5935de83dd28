"""Who may see which experiments of a lab: the lab file's ``visibility``.

``lab`` (the default): everyone with a role on the lab sees all of its experiments. ``own``:
a researcher or an observer sees only the experiments they submitted (an observer submits
none), with their runs, data, plots and live documents; the lab's managers and admins see
everything. Another user's experiment or run is answered 404 in the words of one that does
not exist; where a view of the lab names experiments (device holders and waiters, samples,
alerts, why one waits) another user's id is :data:`~remotelab.api.redaction.HIDDEN` or left
out. Counts (how many experiments wait) and the state of the lab's devices and workers stay
the lab's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from remotelab.api.auth import Principal, Role
from remotelab.api.gateway import Gateway, LabService
from remotelab.api.models import ExperimentHistory
from remotelab.api.redaction import scrub, visible_alerts
from remotelab.data.reader import MIN_PREFIX
from remotelab.errors import (
    ExperimentNotFound,
    PlanValidationError,
    RemotelabError,
    RunNotFound,
)
from remotelab.queue import listing
from remotelab.queue.models import Experiment, ExperimentState

UNFINISHED = [s for s in ExperimentState if not s.finished]


def sees_all(svc: LabService, who: Principal) -> bool:
    """Whether the caller sees every experiment of the lab: its file says ``visibility: lab``,
    or they are its manager (or an admin)."""
    return svc.lab.visibility != "own" or who.role.at_least(Role.manager)


class View:
    """What one caller may see of one lab's experiments, for one request.

    ``user`` is None when they see everything, else the one user whose experiments they see.
    Whose an experiment id is comes from the lab's unfinished experiments (one read of the
    queue, when first needed), else from reading that experiment.
    """

    def __init__(self, svc: LabService, who: Principal | None = None, *, user: str | None = None):
        self.svc = svc
        #: whose experiments the caller sees (None: everyone's); given, or the caller's
        self.user = user if who is None else None if sees_all(svc, who) else who.user
        self._owners: dict[str, str] | None = None

    def mine(self, submitter: str | None) -> bool:
        """Whether the caller may see what ``submitter`` submitted."""
        return self.user is None or submitter == self.user

    def sees(self, experiment_id: str) -> bool:
        """Whether the caller may see the experiment ``experiment_id`` (a full id)."""
        return self.user is None or self._owner(experiment_id) == self.user

    def _owner(self, experiment_id: str) -> str:
        """Who submitted experiment ``experiment_id`` ("": it is none of the lab's)."""
        owners = self.owners()
        if experiment_id not in owners:
            owners[experiment_id] = self._read_owner(experiment_id)
        return owners[experiment_id]

    def owners(self) -> dict[str, str]:
        """Experiment id → submitter: the lab's unfinished experiments, and those read since."""
        if self._owners is None:
            self._owners = {e.id: e.submitter for e in self.svc.queue.read(UNFINISHED)}
        return self._owners

    def _read_owner(self, experiment_id: str) -> str:
        try:
            return self.svc.queue.get(str(UUID(experiment_id))).submitter
        except (ValueError, RemotelabError):  # not an id; no such experiment
            return ""

    def shown(self, experiment_id: str | None) -> str | None:
        """``experiment_id`` if the caller may see it, else None."""
        return experiment_id if not experiment_id or self.sees(experiment_id) else None

    def scrub(self, text: str | None) -> str | None:
        """``text`` with the ids of other users' experiments hidden (other ids, a run's
        uid say, stay)."""
        return text if text is None or self.user is None else scrub(text, self._shows)

    def _shows(self, some_id: str) -> bool:
        """Whether a text may name ``some_id``: the caller's experiment, or no experiment."""
        return self._owner(some_id) in ("", self.user)

    def experiments(self, items: Iterable[Experiment]) -> list[Experiment]:
        """The experiments of ``items`` the caller may see; why each waits and its state's
        message (its error) scrubbed."""
        out = [e for e in items if self.mine(e.submitter)]
        if self.user is not None:
            for exp in out:
                exp.waiting_for = self.scrub(exp.waiting_for)
                exp.message = self.scrub(exp.message) or ""
                exp.error = self.scrub(exp.error)
        return out

    def history(self, history: ExperimentHistory) -> ExperimentHistory:
        """An experiment's history with the states' messages and the requests' reasons
        scrubbed, and an experiment it was moved behind hidden if the caller may not see it."""
        if self.user is None:
            return history
        for state in history.states:
            state.message = self.scrub(state.message) or ""
        for action in history.actions:
            detail = action.detail
            if isinstance(detail.get("behind"), str):
                detail["behind"] = self.shown(detail["behind"])
            if isinstance(detail.get("reason"), str):
                detail["reason"] = self.scrub(detail["reason"])
        return history

    def alerts(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The alerts the caller may see (:func:`~remotelab.api.redaction.visible_alerts`)."""
        return alerts if self.user is None else visible_alerts(alerts, self.sees, self._shows)

    def ids(self, experiment_ids: Iterable[str]) -> list[str]:
        """The experiment ids of ``experiment_ids`` the caller may see."""
        return [e for e in experiment_ids if self.sees(e)]

    def waiters(self, waiters: Iterable[Any]) -> list[Any]:
        """The waiters (of a device, a sample) the caller may see."""
        return [w for w in waiters if self.sees(_experiment_of(w))]

    def reservations(self, view: dict[str, Any]) -> dict[str, Any]:
        """The workers' reservations view (``queue.reservations()``) as the caller may see it:
        holders they may not see hidden (None), such waiters, waits and running ones left out."""
        if self.user is None:
            return view
        book = {
            resource: {
                **entry,
                "holder": self.shown(entry.get("holder")),
                "waiters": self.waiters(entry.get("waiters") or []),
            }
            for resource, entry in (view.get("reservations") or {}).items()
        }
        waiting = {e: self.scrub(why) for e, why in (view.get("waiting") or {}).items()}
        return {
            **view,
            "reservations": book,
            "waiting": {e: why for e, why in waiting.items() if self.sees(e)},
            "running": [r for r in view.get("running") or [] if self.mine(r.get("submitter"))],
            "alerts": self.alerts(view.get("alerts") or []),
        }

    @contextmanager
    def hiding(self) -> Iterator[None]:
        """A refusal of the block's submission that names experiments the caller may not see
        (a sample another's experiment used up) comes out with their ids hidden."""
        try:
            yield
        except PlanValidationError as exc:
            if self.user is None:
                raise
            errors = [{**e, "message": self.scrub(str(e.get("message", "")))} for e in exc.errors]
            raise PlanValidationError(exc.plan, errors) from None

    def samples(self, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The lab's samples (``lab_samples``) with the experiments the caller may not see
        (holding one, having used one up) hidden."""
        if self.user is None:
            return samples
        return [
            {
                **s,
                "held_by": self.shown(s.get("held_by")),
                "consumed_by": self.shown(s.get("consumed_by")),
                "why_consumed": self.scrub(s.get("why_consumed")),
            }
            for s in samples
        ]


def _experiment_of(waiter: Any) -> str:
    if isinstance(waiter, dict):
        return str(waiter.get("experiment") or "")
    return str(getattr(waiter, "experiment", "") or "")


def visible_experiment(svc: LabService, who: Principal, experiment_id: str) -> Experiment:
    """The experiment ``experiment_id`` names (or a unique prefix), if the caller may see it;
    :class:`ExperimentNotFound` as for one that does not exist if not."""
    view = View(svc, who)
    if view.user is None:
        return svc.queue.get(experiment_id)
    mine = listing.filter_tags(view.user, None, None)
    full = listing.resolve_id(svc.queue, experiment_id, tags=mine)
    exp = svc.queue.get(full)
    if exp.submitter != view.user:
        raise ExperimentNotFound(f"no experiment {full} in lab {svc.queue.name}")
    return exp


# -- stored runs -----------------------------------------------------------------------------
def own_labs(gw: Gateway, who: Principal) -> set[str]:
    """The labs of the gateway whose runs the caller sees only of their own submitting."""
    return {name for name, svc in gw.labs.items() if not sees_all(svc, who)}


def sees_run(who: Principal, run: Any, own: set[str]) -> bool:
    """Whether the caller may see stored ``run`` (``own``: :func:`own_labs`)."""
    if run.lab and not who.may_use(run.lab):
        return False
    return run.lab not in own or run.submitter == who.user


def readable_run(gw: Gateway, who: Principal, uid: str) -> Any:
    """The stored run ``uid`` (or a unique prefix) if the caller may see it: of a lab they
    may use, and theirs where the lab shows its runs to their submitters only. Else
    :class:`RunNotFound` as for a run that is not stored; a prefix matches only the runs the
    caller may see."""
    store = gw.run_store()
    own = own_labs(gw, who)
    missing = RunNotFound(f"no run {uid!r} in the store {store.path}")
    if not own or len(uid) < MIN_PREFIX or store.starting_with(uid, 1) == [uid]:
        run = store.run(uid)
        if not sees_run(who, run, own):
            raise missing
        return run
    found = [r for r in map(store.run, store.starting_with(uid)) if sees_run(who, r, own)]
    if len(found) > 1:
        raise RunNotFound(f"run uid prefix {uid!r} is ambiguous; give more characters")
    if not found:
        raise missing
    return found[0]


__all__ = [
    "UNFINISHED",
    "View",
    "own_labs",
    "readable_run",
    "sees_all",
    "sees_run",
    "visible_experiment",
]
