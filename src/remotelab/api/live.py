"""Live updates in the gateway: one subscriber on the stream proxy, fanned out to listeners.

:class:`LiveHub` keeps the last worker status of each lab (for live device and lab status)
and hands each document to every listener whose filter (lab, experiment) it passes; a status
reaches the listeners of every experiment in its ``running`` map (several run at once). The
gateway's Server-Sent Events route is one such listener per connected client.

It also keeps, per lab, the latest values each device gave on the stream (``readings``) and
the recent items of the stream (``recent``: documents other than events, status changes, and
the last events), so that a dashboard opened now starts with the lab's recent history.

A listener (and ``recent``, ``readings``, ``lab_status``) may be for one ``user``: the caller
of a lab whose file says ``visibility: own``. It gets only the documents of runs that user
submitted (as their start document says) and each status reduced to the experiments they
submitted (:func:`~remotelab.api.redaction.reduce_status`); a document of a run whose start
the hub did not see is for no such listener.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from remotelab.api.redaction import Sees, reduce_status

log = logging.getLogger(__name__)

#: how many recent items (documents, status changes) and events of a lab are kept
RECENT_ITEMS = 100
RECENT_EVENTS = 20
#: how many experiments' submitters the hub remembers
KNOWN_SUBMITTERS = 10_000


@dataclass
class _Listener:
    lab: str | None
    experiment: str | None
    user: str | None = None  # only this user's experiments (a lab whose visibility is own)
    box: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=10_000))
    dropped: int = 0


class LiveHub:
    """Subscribe to the stream at ``address`` and relay it to listeners (a thread)."""

    def __init__(self, address: str | None):
        self.address = address
        self.status: dict[str, dict[str, Any]] = {}  # lab -> last worker status
        self._runs: dict[str, tuple[str, str | None, str]] = {}  # run -> lab, experiment, user
        self._submitters: OrderedDict[str, str] = OrderedDict()  # experiment id -> submitter
        self._docs: dict[str, str] = {}  # descriptor / resource uid -> run uid
        self._listeners: list[_Listener] = []
        self._keys: dict[str, tuple[str, dict[str, str]]] = {}  # descriptor -> (run, key->device)
        self._readings: dict[str, dict[str, dict[str, Any]]] = {}  # lab -> device -> reading
        self._recent: dict[str, deque[dict[str, Any]]] = {}
        self._events: dict[str, deque[dict[str, Any]]] = {}
        self._last_state: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LiveHub:
        if self.address and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="remotelab-live", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        from remotelab.stream import Subscriber

        assert self.address is not None
        try:
            sub = Subscriber(self.address)
        except Exception as exc:
            log.warning("live updates are off: %s", exc)
            return
        with sub:
            while not self._stop.is_set():
                message = sub.receive(timeout=0.2)
                if message is not None:
                    self.dispatch(message.kind, message.name, message.doc)

    # -- routing -----------------------------------------------------------------------------
    def dispatch(self, kind: str, name: str, doc: dict[str, Any]) -> None:
        """Route one stream message to the listeners it concerns."""
        if kind == "status":
            lab = str(doc.get("lab") or "")
            with self._lock:
                self.status[lab] = doc
                key = (doc.get("state"), doc.get("experiment_id"))
                if self._last_state.get(lab) != key:
                    self._last_state[lab] = key
                    self._remember(lab, "status", doc)
            # a status concerns its latest run's experiment and every experiment running
            running = doc.get("running")
            concerns = {str(e) for e in running} if isinstance(running, dict) else set()
            if doc.get("experiment_id"):
                concerns.add(str(doc["experiment_id"]))
            self._fan(lab, concerns, {"event": "status", "data": doc})
            return
        lab, experiment, submitter = self._owner(name, doc)
        with self._lock:
            self._note(lab, experiment, submitter, name, doc)
        item = {"event": "document", "data": {"name": name, "doc": doc}}
        self._fan(lab, experiment, item, submitter)

    def learn(self, submitters: Mapping[str, str]) -> None:
        """Remember who submitted these experiments (id → user), for the listeners of one user:
        what the gateway read from the queue of experiments whose start the hub did not see."""
        with self._lock:
            for experiment, user in submitters.items():
                self._know(experiment, user)

    def _know(self, experiment: str, user: str) -> None:
        """Remember ``experiment``'s submitter (holding the lock)."""
        self._submitters[experiment] = user
        self._submitters.move_to_end(experiment)
        while len(self._submitters) > KNOWN_SUBMITTERS:
            self._submitters.popitem(last=False)

    def sees(self, user: str) -> Sees:
        """Whether ``user`` submitted an experiment (of an id), as far as the hub knows."""
        return lambda experiment: self._submitters.get(experiment) == user

    def _remember(self, lab: str, name: str, doc: dict[str, Any], submitter: str = "") -> None:
        """Keep a stream item in the lab's recent history (holding the lock)."""
        item = {"name": name, "doc": doc, "at": time.time(), "submitter": submitter}
        if name == "event":
            self._events.setdefault(lab, deque(maxlen=RECENT_EVENTS)).append(item)
        else:
            self._recent.setdefault(lab, deque(maxlen=RECENT_ITEMS)).append(item)

    def _note(
        self, lab: str, experiment: str | None, submitter: str, name: str, doc: dict[str, Any]
    ) -> None:
        """The recent history, and the devices' readings, a document brings (holding the lock)."""
        if name == "descriptor":
            owners = {
                key: device
                for device, keys in (doc.get("object_keys") or {}).items()
                for key in keys
            }
            self._keys[doc.get("uid", "")] = (str(doc.get("run_start", "")), owners)
        elif name == "event":
            _, owners = self._keys.get(doc.get("descriptor", ""), ("", {}))
            devices = self._readings.setdefault(lab, {})
            for key, value in (doc.get("data") or {}).items():
                device = owners.get(key, key)
                reading = devices.get(device)
                whose = {"experiment": experiment, "submitter": submitter}
                if reading is None or {k: reading[k] for k in whose} != whose:
                    reading = devices[device] = {**whose, "values": {}}
                reading["time"] = doc.get("time") or time.time()
                reading["values"][key] = reading_value(value)
        elif name == "stop":
            run = doc.get("run_start")
            self._keys = {d: v for d, v in self._keys.items() if v[0] != run}
        if name in ("start", "descriptor", "event", "stop"):
            self._remember(lab, name, doc, submitter)

    def _owner(self, name: str, doc: dict[str, Any]) -> tuple[str, str | None, str]:
        """The lab, experiment and submitter of a document's run (as its start said)."""
        with self._lock:
            if name == "start":
                exp_id = doc.get("experiment_id")
                submitter = str(doc.get("submitter") or "")
                owner = (str(doc.get("lab") or ""), str(exp_id) if exp_id else None, submitter)
                self._runs[doc["uid"]] = owner
                if exp_id and submitter:
                    self._know(str(exp_id), submitter)
                return owner
            run = doc.get("run_start")
            if run is None:
                run = self._docs.get(doc.get("descriptor", "") or "")
            if name in ("descriptor", "resource", "stream_resource") and run is not None:
                self._docs[doc["uid"]] = run
            owner = self._runs.get(run or "", ("", None, ""))
            if name == "stop":
                self._runs.pop(run or "", None)
                self._docs = {k: v for k, v in self._docs.items() if v != run}
            return owner

    def _fan(
        self,
        lab: str,
        experiment: str | set[str] | None,
        item: dict[str, Any],
        submitter: str = "",
    ) -> None:
        """Hand ``item`` to each listener it concerns; a listener of one user gets a document
        only of that user's run, a status reduced to their experiments."""
        concerns = experiment if isinstance(experiment, set) else {experiment}
        with self._lock:
            listeners = list(self._listeners)
        reduced: dict[str, dict[str, Any]] = {}  # user -> the status as they see it
        for li in listeners:
            if li.lab is not None and lab and li.lab != lab:
                continue
            if li.experiment is not None and li.experiment not in concerns:
                continue
            given = item
            if li.user is not None:
                if item["event"] == "document" and submitter != li.user:
                    continue
                if item["event"] == "status":
                    if li.user not in reduced:
                        reduced[li.user] = reduce_status(item["data"], self.sees(li.user))
                    given = {"event": "status", "data": reduced[li.user]}
            try:
                li.box.put_nowait(given)
            except queue.Full:
                li.dropped += 1

    @contextmanager
    def listen(
        self, lab: str | None = None, experiment: str | None = None, user: str | None = None
    ) -> Iterator[_Listener]:
        """A listener for the duration of the block (of ``user``'s experiments only, if
        given); read ``listener.box``."""
        li = _Listener(lab, experiment, user)
        with self._lock:
            self._listeners.append(li)
        try:
            yield li
        finally:
            with self._lock:
                self._listeners.remove(li)

    def lab_status(self, lab: str, user: str | None = None) -> dict[str, Any] | None:
        """The lab's last worker status (as ``user`` may see it, if given)."""
        with self._lock:
            doc = self.status.get(lab)
        return doc if doc is None or user is None else reduce_status(doc, self.sees(user))

    def readings(self, lab: str, user: str | None = None) -> dict[str, dict[str, Any]]:
        """Device -> its latest reading on the stream: ``time``, ``experiment``, ``values``
        (only of ``user``'s runs, if given)."""
        with self._lock:
            devices = self._readings.get(lab, {})
            return {
                d: {
                    "time": r.get("time"),
                    "experiment": r["experiment"],
                    "values": dict(r["values"]),
                }
                for d, r in devices.items()
                if user is None or r["submitter"] == user
            }

    def recent(
        self, lab: str, limit: int = RECENT_ITEMS, user: str | None = None
    ) -> list[dict[str, Any]]:
        """The lab's recent stream items, oldest first: ``{name, doc, at}`` (``name`` a
        document's, or ``status`` for a change of the worker's state); with ``user``, only
        the documents of their runs, the statuses as they may see them."""
        with self._lock:
            items = [*self._recent.get(lab, ()), *self._events.get(lab, ())]
        items.sort(key=lambda i: i["at"])
        if user is not None:
            sees = self.sees(user)
            items = [
                {**i, "doc": reduce_status(i["doc"], sees)} if i["name"] == "status" else i
                for i in items
                if i["name"] == "status" or i["submitter"] == user
            ]
        kept = items[-limit:] if limit > 0 else []
        return [{"name": i["name"], "doc": i["doc"], "at": i["at"]} for i in kept]


def reading_value(value: Any) -> Any:
    """A reading's value as the devices panel shows it: numbers and text as they are (NaN and
    infinities as None: JSON has none), an array as its length."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return f"array[{len(value)}]"
    ndim = getattr(value, "ndim", None)  # a numpy array
    if isinstance(ndim, int) and ndim > 0:
        return f"array[{len(value)}]"
    return value


__all__ = ["RECENT_EVENTS", "RECENT_ITEMS", "LiveHub", "reading_value"]
