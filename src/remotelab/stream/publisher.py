"""Publish bluesky documents and the worker's status to the stream proxy.

The wire format is that of ``bluesky.callbacks.zmq.Publisher``: one zmq message
``prefix + b" " + name + b" " + payload`` per document, the payload encoded with
:func:`remotelab.data.codec.encode` (msgpack; never pickle). Documents go under
:data:`DOC_PREFIX`, worker status under :data:`STATUS_PREFIX` (name ``status``), so a
``RemoteDispatcher(address, prefix=DOC_PREFIX, deserializer=decode)`` sees documents only.

Publishing never blocks the RunEngine: with no proxy or no subscriber, zmq drops messages.

The publisher is a CurveZMQ client of the proxy (:mod:`remotelab.keys.curve`): it signs in
with its keypair (``worker-LAB`` for a lab's worker) and connects only to the proxy whose key
its allowlist holds as ``stream-proxy``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import zmq

from remotelab.data.codec import encode
from remotelab.errors import StreamError
from remotelab.keys.curve import CLIENT, CurveKeyError, CurveKeys, worker_key_name

#: prefix of document messages
DOC_PREFIX = b"remotelab"
#: prefix of worker status messages (their name is ``status``)
STATUS_PREFIX = b"remotelab.status"

State = Literal["idle", "running", "paused"]


class StreamPublisher:
    """A bluesky callback that publishes documents, and the worker's status, to a proxy.

    It follows the documents to keep a status (``idle``/``running``/``paused``, the current
    experiment and run, progress as events done of ``num_points``) and publishes it on every
    change, at most ``progress_rate`` times a second while events flow, and every
    ``heartbeat`` seconds so that late subscribers learn the state.

    ``key_name``: its CURVE keypair (default ``worker-LAB`` with a ``lab``, else ``client``)
    in ``keys`` (default: the keys directory's).
    """

    def __init__(
        self,
        address: str,
        *,
        prefix: bytes = DOC_PREFIX,
        status_prefix: bytes = STATUS_PREFIX,
        worker: str = "",
        lab: str = "",
        heartbeat: float | None = 1.0,
        progress_rate: float = 10.0,
        send_hwm: int = 100_000,
        key_name: str | None = None,
        keys: CurveKeys | None = None,
    ):
        for p in (prefix, status_prefix):
            if not isinstance(p, bytes) or b" " in p or not p:
                raise StreamError(f"a stream prefix must be non-empty bytes without b' ': {p!r}")
        if prefix == status_prefix:
            raise StreamError("documents and status need different prefixes")
        self.address = address
        self._doc_head = prefix + b" "
        self._status_head = status_prefix + b" status "
        keys = keys or CurveKeys()
        try:
            keypair = keys.keypair(key_name or (worker_key_name(lab) if lab else CLIENT))
            server_key = keys.proxy_key(address)
        except CurveKeyError as exc:
            raise StreamError(f"cannot publish to the stream at {address}: {exc}") from None
        self._context = zmq.Context()
        # XPUB speaks the PUB wire protocol and also lets us see the proxy's subscription,
        # which tells us the connection is up (wait_connected).
        self._socket = self._context.socket(zmq.XPUB)
        self._socket.setsockopt(zmq.SNDHWM, send_hwm)
        self._socket.setsockopt(zmq.LINGER, 1000)
        keypair.client(self._socket, server_key)
        try:
            self._socket.connect(address)
        except zmq.ZMQError as exc:
            self._context.destroy(linger=0)
            raise StreamError(f"cannot connect the stream publisher to {address}: {exc}") from None
        self._lock = threading.Lock()
        self._closed = False
        self._connected = False
        self.status: dict[str, Any] = {
            "worker": worker,
            "lab": lab,
            "state": "idle",
            "experiment_id": None,
            "plan_name": None,
            "run_uid": None,
            "descriptors": [],
            "progress": {"done": 0, "total": None},
            "running": {},
            "alerts": [],
        }
        self._runs: dict[str, str] = {}  # run uid -> its key in status["running"]
        self._descriptors: dict[str, str] = {}  # descriptor uid -> run uid
        self._primary: set[str] = set()  # the primary streams' descriptors: progress counts theirs
        self._engine: dict[str, str] = {}  # experiment -> its RunEngine's state, if not idle
        self._named = False  # whether RunEngine states came with their experiment
        self._min_progress_gap = 1.0 / progress_rate if progress_rate > 0 else 0.0
        self._last_status = 0.0
        self._stop_heartbeat = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if heartbeat:
            self._heartbeat = threading.Thread(
                target=self._beat, args=(heartbeat,), name="remotelab-stream-heartbeat", daemon=True
            )
            self._heartbeat.start()

    # -- documents ---------------------------------------------------------------------------
    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Publish one document (and update the status it implies)."""
        message = self._doc_head + name.encode() + b" " + encode(doc)
        with self._lock:
            if self._closed:
                return
            # zero-copy pays off only for big messages (spectra by the thousand)
            if len(message) < 65536:
                self._socket.send(message)
            else:
                self._socket.send(message, copy=False)
            self._follow(name, doc)

    def _follow(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self._on_start(doc)
        elif name == "descriptor":
            run = doc.get("run_start")
            if run in self._runs:
                self._descriptors[doc["uid"]] = run
                if doc.get("name", "primary") == "primary":
                    self._primary.add(doc["uid"])
                if run == self.status["run_uid"]:
                    self.status["descriptors"] = [*self.status["descriptors"], doc["uid"]]
                self._send_status()
        elif name in ("event", "event_page"):
            descriptor = doc.get("descriptor", "")
            run = self._descriptors.get(descriptor)
            if run is None or descriptor not in self._primary:
                return  # progress counts the primary stream's events (num_points is theirs)
            n = 1 if name == "event" else len(doc.get("seq_num", []))
            key = self._runs[run]
            running = self.status["running"]
            entry = running[key]
            progress = {**entry["progress"], "done": entry["progress"]["done"] + n}
            self.status["running"] = {**running, key: {**entry, "progress": progress}}
            if run == self.status["run_uid"]:
                self.status["progress"] = progress
            if time.monotonic() - self._last_status >= self._min_progress_gap:
                self._send_status()
        elif name == "stop" and doc.get("run_start") in self._runs:
            self._on_stop(doc)

    def _on_start(self, doc: dict[str, Any]) -> None:
        s = self.status
        total = doc.get("num_points")
        progress = {"done": 0, "total": total if isinstance(total, int) else None}
        exp_id = doc.get("experiment_id")
        key = str(exp_id) if exp_id else doc["uid"]
        # a lane's RunEngine names its experiment; a lone RunEngine's state is the top level's
        fallback = "running" if self._named else (s.get("engine_state") or "running")
        engine_state = self._engine.get(key, fallback)
        entry = {
            "state": _state_of(engine_state, running=True),
            "plan_name": doc.get("plan_name"),
            "run_uid": doc["uid"],
            "progress": progress,
            "engine_state": engine_state,
        }
        self._runs[doc["uid"]] = key
        s["running"] = {**s["running"], key: entry}
        s.update(
            experiment_id=exp_id,
            plan_name=doc.get("plan_name"),
            run_uid=doc["uid"],
            descriptors=[],
            progress=progress,
        )
        s["state"] = self._overall(None)
        self._send_status()

    def _on_stop(self, doc: dict[str, Any]) -> None:
        s = self.status
        run = doc["run_start"]
        key = self._runs.pop(run)
        self._descriptors = {d: r for d, r in self._descriptors.items() if r != run}
        self._primary &= set(self._descriptors)
        s["running"] = {k: v for k, v in s["running"].items() if k != key}
        s["exit_status"] = doc.get("exit_status")
        if run == s["run_uid"]:
            if s["running"]:  # the top level shows the latest run still going
                latest_key, latest = list(s["running"].items())[-1]
                s.update(
                    experiment_id=latest_key if latest_key != latest["run_uid"] else None,
                    plan_name=latest["plan_name"],
                    run_uid=latest["run_uid"],
                    descriptors=[d for d, r in self._descriptors.items() if r == latest["run_uid"]],
                    progress=latest["progress"],
                )
            else:
                s.update(run_uid=None, descriptors=[])
        s["state"] = self._overall("idle")
        self._send_status()

    def _overall(self, fallback: State | None) -> State:
        """running if any run goes on, paused if every running one is paused, else fallback."""
        entries = self.status["running"].values()
        if not entries:
            return fallback or "idle"
        if all(e["state"] == "paused" for e in entries):
            return "paused"
        return "running"

    # -- status ------------------------------------------------------------------------------
    def set_state(self, state: State, **fields: Any) -> None:
        """Set the worker's state (``paused`` on a RunEngine pause, …) and publish it."""
        if state not in ("idle", "running", "paused"):
            raise StreamError(f"worker state must be idle, running or paused, not {state!r}")
        with self._lock:
            self.status.update(fields, state=state)
            self._send_status()

    def on_engine_state(
        self, new_state: Any, old_state: Any = None, experiment: str | None = None
    ) -> None:
        """Follow a RunEngine's state: ``RE.state_hook = publisher.on_engine_state``, or
        through :func:`remotelab.data.wiring.attach`, which names the lane's experiment.

        ``paused`` (and ``suspending``, a suspender's pause) mean ``paused``; ``idle``
        ``idle``; every other state (running, stopping, aborting…) ``running``. With
        ``experiment``, only that experiment's entry of ``status["running"]`` follows (one
        RunEngine per experiment); without, every running entry does (one RunEngine). The
        top-level ``state`` is ``running`` while any run goes on, ``paused`` if every running
        one is paused; the RunEngine's own state name is sent as ``engine_state``.
        """
        engine_state = str(new_state)
        with self._lock:
            s = self.status
            if experiment is not None:
                self._named = True
                if engine_state == "idle":
                    self._engine.pop(experiment, None)
                else:
                    self._engine[experiment] = engine_state
            running = s["running"]
            keys = [k for k in running if experiment is None or k == experiment]
            for key in keys:
                state = _state_of(engine_state, running=True)
                running = {
                    **running,
                    key: {**running[key], "state": state, "engine_state": engine_state},
                }
            s["running"] = running
            if experiment is None or experiment == s["experiment_id"] or not running:
                s["engine_state"] = engine_state
            s["state"] = self._overall(_state_of(engine_state, running=False))
            self._send_status()

    def update_status(self, **fields: Any) -> None:
        """Change fields of the status other than the state (e.g. the worker's ``alerts``)
        and publish it."""
        if "state" in fields:
            raise StreamError("set the worker's state with set_state")
        with self._lock:
            self.status.update(fields)
            self._send_status()

    def publish_status(self) -> None:
        """Publish the current status now."""
        with self._lock:
            self._send_status()

    def _send_status(self) -> None:
        if self._closed:
            return
        self._last_status = time.monotonic()
        self._socket.send(self._status_head + encode({**self.status, "time": time.time()}))

    def _beat(self, period: float) -> None:
        while not self._stop_heartbeat.wait(period):
            self.publish_status()

    # -- connection --------------------------------------------------------------------------
    def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait until the proxy has subscribed to this publisher; raise StreamError if not."""
        with self._lock:
            if self._connected:
                return
            if self._socket.poll(int(timeout * 1000), zmq.POLLIN):
                while self._socket.poll(0, zmq.POLLIN):
                    self._socket.recv()
                self._connected = True
                return
        raise StreamError(f"no stream proxy answered at {self.address} within {timeout} s")

    def close(self) -> None:
        """Stop the heartbeat and close the socket."""
        self._stop_heartbeat.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._socket.close()
            self._context.term()

    def __enter__(self) -> StreamPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _state_of(engine_state: str, *, running: bool) -> State:
    """The status state a RunEngine state means (a run's own entry is never idle)."""
    if engine_state in ("paused", "suspending"):
        return "paused"
    if engine_state == "idle" and not running:
        return "idle"
    return "running"


__all__ = ["DOC_PREFIX", "STATUS_PREFIX", "State", "StreamPublisher"]
