"""Publish bluesky documents and the worker's status to the stream proxy.

The wire format is that of ``bluesky.callbacks.zmq.Publisher``: one zmq message
``prefix + b" " + name + b" " + payload`` per document, the payload encoded with
:func:`remotelab.data.codec.encode` (msgpack; never pickle). Documents go under
:data:`DOC_PREFIX`, worker status under :data:`STATUS_PREFIX` (name ``status``), so a
``RemoteDispatcher(address, prefix=DOC_PREFIX, deserializer=decode)`` sees documents only.

Publishing never blocks the RunEngine: with no proxy or no subscriber, zmq drops messages.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import zmq

from remotelab.data.codec import encode
from remotelab.errors import StreamError

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
    ):
        for p in (prefix, status_prefix):
            if not isinstance(p, bytes) or b" " in p or not p:
                raise StreamError(f"a stream prefix must be non-empty bytes without b' ': {p!r}")
        if prefix == status_prefix:
            raise StreamError("documents and status need different prefixes")
        self.address = address
        self._doc_head = prefix + b" "
        self._status_head = status_prefix + b" status "
        self._context = zmq.Context()
        # XPUB speaks the PUB wire protocol and also lets us see the proxy's subscription,
        # which tells us the connection is up (wait_connected).
        self._socket = self._context.socket(zmq.XPUB)
        self._socket.setsockopt(zmq.SNDHWM, send_hwm)
        self._socket.setsockopt(zmq.LINGER, 1000)
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
        }
        self._run_of: dict[str, str] = {}  # run or descriptor uid → experiment id
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
        s = self.status
        self._follow_experiment(name, doc)
        if name == "start":
            total = doc.get("num_points")
            s.update(
                state="running" if s["state"] != "paused" else "paused",
                experiment_id=doc.get("experiment_id"),
                plan_name=doc.get("plan_name"),
                run_uid=doc["uid"],
                descriptors=[],
                progress={"done": 0, "total": total if isinstance(total, int) else None},
            )
            self._send_status()
        elif name == "descriptor" and doc.get("run_start") == s["run_uid"]:
            s["descriptors"] = [*s["descriptors"], doc["uid"]]
            self._send_status()
        elif name in ("event", "event_page"):
            if doc.get("descriptor") in s["descriptors"]:
                n = 1 if name == "event" else len(doc.get("seq_num", []))
                s["progress"] = {**s["progress"], "done": s["progress"]["done"] + n}
                if time.monotonic() - self._last_status >= self._min_progress_gap:
                    self._send_status()
        elif name == "stop":
            if doc.get("run_start") == s["run_uid"]:
                s.update(run_uid=None, descriptors=[], exit_status=doc.get("exit_status"))
                s["state"] = self._overall()
            self._send_status()

    def _follow_experiment(self, name: str, doc: dict[str, Any]) -> None:
        """Keep ``status["running"]``: each running experiment's run and progress (the
        documents of runs running at once interleave; each is counted in its own run)."""
        running: dict[str, dict[str, Any]] = self.status["running"]
        if name == "start":
            exp = str(doc.get("experiment_id") or doc["uid"])
            total = doc.get("num_points")
            self._run_of[doc["uid"]] = exp
            previous = running.get(exp, {})
            running[exp] = {
                "state": previous.get("state", "running"),
                "engine_state": previous.get("engine_state", "running"),
                "plan_name": doc.get("plan_name"),
                "run_uid": doc["uid"],
                "progress": {"done": 0, "total": total if isinstance(total, int) else None},
            }
        elif name == "descriptor":
            exp_id = self._run_of.get(doc.get("run_start", ""))
            if exp_id is not None:
                self._run_of[doc["uid"]] = exp_id
        elif name in ("event", "event_page"):
            entry = running.get(self._run_of.get(doc.get("descriptor", ""), ""))
            if entry is not None:
                n = 1 if name == "event" else len(doc.get("seq_num", []))
                entry["progress"] = {**entry["progress"], "done": entry["progress"]["done"] + n}
        elif name == "stop":
            run = doc.get("run_start", "")
            exp_id = self._run_of.pop(run, None)
            for key in [k for k, v in self._run_of.items() if v == exp_id]:
                self._run_of.pop(key)
            if exp_id is not None and running.get(exp_id, {}).get("run_uid") == run:
                running.pop(exp_id)

    def _overall(self) -> State:
        """idle with nothing running; paused if every running experiment is; else running."""
        running = self.status["running"].values()
        if not running:
            return "idle"
        return "paused" if all(r["state"] == "paused" for r in running) else "running"

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
        """Follow the RunEngine's state: ``RE.state_hook = publisher.on_engine_state``.

        ``paused`` (and ``suspending``, a suspender's pause) publish ``paused``; ``idle``
        publishes ``idle``; every other state (running, stopping, aborting…) ``running``.
        The RunEngine's own state name is sent as ``engine_state``. With several RunEngines
        (one per running experiment), ``experiment`` says whose state it is: that
        experiment's entry of ``running`` follows it, and the worker's state sums them up.
        """
        engine_state = str(new_state)
        if engine_state in ("paused", "suspending"):
            state: State = "paused"
        elif engine_state == "idle":
            state = "idle"
        else:
            state = "running"
        if experiment:
            with self._lock:
                running = self.status["running"]
                entry = running.get(experiment)
                if entry is not None:
                    entry["state"] = "paused" if state == "paused" else "running"
                    entry["engine_state"] = engine_state
                if running:
                    state = self._overall()
        self.set_state(state, engine_state=engine_state)

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


__all__ = ["DOC_PREFIX", "STATUS_PREFIX", "State", "StreamPublisher"]
