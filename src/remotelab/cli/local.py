"""The shared commands on this machine's lab: its Prefect queue, run store, stream proxy and
lab file (the :class:`~remotelab.cli.backend.Backend` of the lab side)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import typer

from remotelab.cli.backend import Done
from remotelab.errors import CommandLineError, QueueError

#: waiting on this machine for an experiment to end: at most this long (a day)
WAIT_FOREVER = 86400.0


def current_user() -> str:
    """Who runs the command (the default of ``--by`` and ``--submitter``)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "someone"


class LocalBackend:
    """This machine's lab. The queue (:class:`~remotelab.queue.ExperimentQueue` on the lab
    file, offline: the worker has the instruments) is opened at its first use.

    ``by``/``submitter`` and ``role`` say who acts (default: this user, a researcher; ``plans``
    lists only a given role's plans);
    ``api`` is the Prefect API; ``store`` the run store file; ``stream`` the stream proxy's
    out address (``watch``); ``rows``, ``since``, ``until``
    as the commands' options of the same names.
    """

    def __init__(
        self,
        lab: str | None = None,
        *,
        api: str | None = None,
        by: str | None = None,
        submitter: str | None = None,
        role: str | None = None,
        store: Path | None = None,
        stream: str | None = None,
        rows: int | None = None,
        since: str | None = None,
        until: str | None = None,
        simulate: bool = False,
    ):
        self.lab = lab
        self.simulate = simulate
        self.lab_file = Path(lab) if lab else None
        self.api = api
        self.user = by or submitter or current_user()
        self.role = role or "researcher"
        self.role_given = role
        self.store, self.stream, self.rows = store, stream, rows
        self.since, self.until = since, until
        self._queue: Any = None

    @property
    def queue(self) -> Any:
        """The lab's :class:`~remotelab.queue.ExperimentQueue` (opened now if not yet)."""
        if self._queue is None:
            from remotelab.lab import load_lab
            from remotelab.queue import ExperimentQueue

            self._queue = ExperimentQueue(
                load_lab(self.lab_file, connect=False, simulate=self.simulate), api_url=self.api
            )
        return self._queue

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()
            self._queue = None

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lab_name(self) -> str:
        return self.queue.name

    # -- experiments --------------------------------------------------------------------------
    def schema(self, plan: str) -> dict[str, Any]:
        return self.queue.registry.schema(plan)

    def submit(self, plan: str, params: dict[str, Any], *, priority: str) -> Any:
        return self.queue.submit(
            plan, params, submitter=self.user, role=self.role, priority=priority
        )

    def experiment(self, experiment_id: str) -> Any:
        return self.queue.annotate([self.queue.get(experiment_id)])[0]

    def wait(self, experiment_id: str) -> Any:
        return self.queue.wait_for(experiment_id, timeout=WAIT_FOREVER)

    def follow(self, experiment_id: str, *, as_json: bool) -> None:
        """The experiment's run live from the stream proxy, until the queue says it ended."""
        from remotelab.cli import data

        def ended() -> str | None:
            try:
                now = self.queue.get(experiment_id).state
            except Exception:  # a transient Prefect error: ask again later
                return None
            return now.value if now.finished else None

        try:
            data.watch(
                experiment_id, stream=None, timeout=None, rows=None, as_json=as_json, ended=ended
            )
        except typer.Exit as stopped:
            if stopped.exit_code != 1:  # 1: the run failed; the experiment's state says so
                raise

    def edit(self, experiment_id: str, params: dict[str, Any]) -> Any:
        return self.queue.edit(experiment_id, params, by=self.user, role=self.role)

    def experiments(
        self,
        *,
        states: list[str] | None,
        submitter: str | None,
        plan: str | None,
        limit: int,
        mine: bool = False,
    ) -> tuple[list[Any], int]:
        from remotelab.queue import ExperimentState
        from remotelab.queue.listing import list_experiments
        from remotelab.queue.service import UNFINISHED

        if mine:
            raise CommandLineError("--mine only works through a gateway")
        wanted = [ExperimentState(s) for s in states] if states else list(UNFINISHED)
        return list_experiments(self.queue, wanted, submitter=submitter, plan=plan, limit=limit)

    def is_held(self) -> bool:
        return self.queue.is_held()

    def cancel(self, experiment_id: str, *, reason: str = "") -> Any:
        return self.queue.cancel(experiment_id, reason=reason, by=self.user)

    def move(self, experiment_id: str, *, to: str | None = None, behind: str | None = None) -> Any:
        return self.queue.move(experiment_id, to=to, behind=behind)

    def prioritise(self, experiment_id: str, priority: str) -> Any:
        return self.queue.prioritise(experiment_id, priority)

    def approve(self, experiment_id: str) -> Any:
        return self.queue.approve(experiment_id, by=self.user)

    def reject(self, experiment_id: str, *, reason: str = "") -> Any:
        return self.queue.reject(experiment_id, reason=reason, by=self.user)

    def answer(self, experiment_id: str, value: Any) -> Any:
        return self.queue.answer(experiment_id, value)

    # -- notifications ------------------------------------------------------------------------
    def subscriptions(self) -> list[dict[str, Any]]:
        subs = self.queue.subscriptions.visible(self.user, self.role)
        return [s.shown() for s in subs]

    def subscribe(self, url: str, events: list[str]) -> dict[str, Any]:
        return self.queue.subscriptions.add(url, events, user=self.user, role=self.role).shown()

    def unsubscribe(self, subscription_id: str) -> dict[str, Any]:
        subs = self.queue.subscriptions
        return subs.remove(subscription_id, user=self.user, role=self.role).shown()

    def notify_test(self, subscription_id: str | None) -> list[dict[str, Any]]:
        done = self.queue.subscriptions.test(
            subscription_id, user=self.user, role=self.role, notifier=self.queue.notifier
        )
        return [d.__dict__ for d in done]

    # -- the lab --------------------------------------------------------------------------------
    def _done(self, detail: Any, experiment: str | None = None) -> Done:
        return Done(self.queue.name, detail, experiment)

    def hold(self) -> Done:
        return self._done(self.queue.hold())

    def release(self) -> Done:
        return self._done(self.queue.release())

    def pause(self, *, immediate: bool = False, experiment: str | None = None) -> Done:
        return self._done(self.queue.pause(immediate=immediate, experiment=experiment), experiment)

    def resume(self, *, experiment: str | None = None) -> Done:
        return self._done(self.queue.resume(experiment=experiment), experiment)

    def stop(self, *, experiment: str | None = None) -> Done:
        return self._done(self.queue.stop(experiment=experiment), experiment)

    def abort(self, reason: str = "", *, experiment: str | None = None) -> Done:
        return self._done(self.queue.abort(reason, experiment=experiment), experiment)

    # -- what this side shows -----------------------------------------------------------------
    def watch(self, experiment_id: str | None, *, timeout: float | None, as_json: bool) -> None:
        """One experiment from the stream proxy: a table of its events and a progress bar."""
        from remotelab.cli import data

        if self.lab:
            raise CommandLineError("--lab: on this machine, watch follows the stream proxy")
        if experiment_id is None:
            raise CommandLineError("on this machine, watch needs an experiment id")
        data.watch(
            self._full_id(experiment_id),
            stream=self.stream,
            timeout=timeout,
            rows=self.rows,
            as_json=as_json,
        )

    def _full_id(self, experiment_id: str) -> str:
        """The full id a prefix names, as the queue says; as given if the queue knows none or
        cannot be asked (the stream alone needs no Prefect; watch then says it did not start)."""
        import httpx

        if len(experiment_id) >= 36:
            return experiment_id
        try:
            return self.queue.get(experiment_id).id
        except (QueueError, httpx.HTTPError, OSError):
            return experiment_id

    def plans(self, name: str | None, *, as_json: bool) -> None:
        from remotelab.cli import plans

        plans.plans(
            self.lab_file, name, role=self.role_given, as_json=as_json, simulate=self.simulate
        )

    def devices(self, *, as_json: bool) -> None:
        from remotelab.cli import lab

        lab.devices(self.lab_file, as_json=as_json, simulate=self.simulate)

    def show_lab(self, *, as_json: bool) -> None:
        """The lab file's devices and samples; with a queue (a Prefect API), what runs, the
        reservations and why experiments wait."""
        from remotelab.cli import lab

        lab.show(
            self.lab_file,
            as_json=as_json,
            activity=self._activity,
            simulate=self.simulate,
            samples=self._samples,
        )

    def _samples(self) -> list[dict[str, Any]] | None:
        """The lab's samples as its queue knows them (none without a Prefect API)."""
        import httpx

        from remotelab.queue.samples import lab_samples

        try:
            return lab_samples(self.queue)
        except (QueueError, httpx.HTTPError):
            return None

    def _activity(self) -> tuple[dict[str, Any], list[Any]] | str:
        """The lab's reservations view and running experiments, or why there are none."""
        import httpx

        from remotelab.queue.workers import ACTIVE

        try:
            view = self.queue.reservations()
            view["alerts"] = self.queue.alerts()
            return view, self.queue.list(ACTIVE)
        except (QueueError, httpx.HTTPError) as exc:  # no Prefect API, or it does not answer
            return str(exc) or type(exc).__name__

    def runs(
        self,
        *,
        experiment: str | None,
        sample: str | None,
        plan: str | None,
        submitter: str | None,
        limit: int,
        as_json: bool,
    ) -> None:
        from remotelab.cli import data

        data.runs(
            experiment=experiment,
            sample=sample,
            plan=plan,
            submitter=submitter,
            since=self.since,
            until=self.until,
            limit=limit,
            as_json=as_json,
            store_path=self.store,
        )

    def export(self, uid: str, fmt: str, out: Path, *, stream: str | None = None) -> list[Path]:
        from remotelab.cli import data

        return data.export(uid, fmt, out, stream=stream, store_path=self.store)

    def plot(self, uid: str, output: Path | None, *, redraw: bool = False) -> Path:
        from remotelab.cli import data

        return data.plot(uid, output, redraw=redraw, store_path=self.store)

    def verify(self, uid: str) -> dict[str, Any]:
        from remotelab.cli import data

        return data.verify(uid, store_path=self.store)


__all__ = ["WAIT_FOREVER", "LocalBackend", "current_user"]
