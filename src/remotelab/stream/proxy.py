"""The stream proxy: many publishers in, many subscribers out.

Publishers (remotelab workers, or ``bluesky.callbacks.zmq.Publisher``) connect to the
proxy's *in* address; subscribers (``remotelab watch``, the API, bluesky's
``RemoteDispatcher``) connect to its *out* address. The proxy takes every message in
(an XSUB subscribed to everything) and forwards it to every subscriber whose
subscription matches (an XPUB). It counts subscriptions, so a caller can wait until a
subscriber is listening before it publishes.

Both addresses are CurveZMQ servers with the ``stream-proxy`` keypair
(:mod:`remotelab.keys.curve`): the input takes publishers whose key is allowed (the lab's
workers), the output serves subscribers allowed everything or to watch; a socket without an
allowed key gets nothing and gives nothing.
"""

from __future__ import annotations

import threading
from collections import Counter

import zmq

from remotelab.errors import StreamError
from remotelab.keys.curve import PROXY, PUBLISH, SUBSCRIBE, CurveKeys, Gatekeeper


class StreamProxy:
    """An XSUB→XPUB forwarder on two addresses; ``start()`` runs it in a thread.

    Addresses are zmq endpoints (``tcp://127.0.0.1:5577``, ``ipc:///run/remotelab.sock``);
    a tcp port ``*`` binds a free port, and :attr:`in_address` / :attr:`out_address` give
    the endpoints actually bound. ``keys``: the CURVE keys (default: the keys directory's).
    """

    def __init__(self, in_address: str, out_address: str, *, keys: CurveKeys | None = None):
        self.keys = keys or CurveKeys()
        keypair = self.keys.keypair(PROXY)
        #: its CURVE public key (Z85), which its clients must trust
        self.public_key = keypair.public.decode()
        self._context = zmq.Context()
        self._gate = Gatekeeper(self._context, self.keys)
        self._front = self._context.socket(zmq.XSUB)
        self._back = self._context.socket(zmq.XPUB)
        self._back.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscription, for counting
        for sock in (self._front, self._back):
            sock.setsockopt(zmq.SNDHWM, 100_000)
            sock.setsockopt(zmq.RCVHWM, 100_000)
            sock.setsockopt(zmq.LINGER, 0)
        keypair.serve(self._front, PUBLISH)
        keypair.serve(self._back, SUBSCRIBE)
        try:
            self._front.bind(in_address)
            self._back.bind(out_address)
        except zmq.ZMQError as exc:
            for sock in (self._front, self._back):
                sock.close(linger=0)
            self._gate.stop()
            self._context.destroy(linger=0)
            raise StreamError(
                f"cannot bind the stream proxy ({in_address}, {out_address}): {exc}"
            ) from None
        self.in_address = self._front.getsockopt_string(zmq.LAST_ENDPOINT)
        self.out_address = self._back.getsockopt_string(zmq.LAST_ENDPOINT)
        self._front.send(b"\x01")  # take everything every publisher sends
        self._ctrl_addr = f"inproc://remotelab-proxy-{id(self)}"
        self._ctrl = self._context.socket(zmq.PAIR)
        self._ctrl.bind(self._ctrl_addr)
        self._subs: Counter[bytes] = Counter()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.forwarded = 0

    # -- running -----------------------------------------------------------------------------
    def run(self) -> None:
        """Forward messages until :meth:`stop` is called (blocks)."""
        poller = zmq.Poller()
        poller.register(self._front, zmq.POLLIN)
        poller.register(self._back, zmq.POLLIN)
        poller.register(self._ctrl, zmq.POLLIN)
        front, back = self._front, self._back
        try:
            while True:
                ready = dict(poller.poll())
                if self._ctrl in ready:
                    break
                if front in ready:
                    while True:
                        try:
                            msg = front.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        back.send_multipart(msg, copy=False)
                        self.forwarded += 1
                if back in ready:
                    while True:
                        try:
                            sub = back.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._count(sub)
        finally:
            self._close()

    def _count(self, sub: bytes) -> None:
        if not sub:
            return
        with self._cond:
            if sub[0] == 1:
                self._subs[sub[1:]] += 1
            elif sub[0] == 0 and self._subs[sub[1:]] > 0:
                self._subs[sub[1:]] -= 1
            self._cond.notify_all()

    def start(self) -> StreamProxy:
        """Run the proxy in a daemon thread and return at once."""
        if self._thread is not None:
            raise StreamError("this stream proxy is already running")
        self._thread = threading.Thread(target=self.run, name="remotelab-stream-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop forwarding and close the sockets."""
        if self._thread is None:
            self._close()
            return
        poke = self._context.socket(zmq.PAIR)
        poke.connect(self._ctrl_addr)
        poke.send(b"stop")
        poke.close()
        self._thread.join(timeout)
        self._thread = None

    def _close(self) -> None:
        if self._context.closed:
            return
        for sock in (self._front, self._back, self._ctrl):
            sock.close(linger=0)
        self._gate.stop()
        self._context.term()

    # -- subscribers -------------------------------------------------------------------------
    def subscribers(self, prefix: bytes = b"") -> int:
        """How many subscriptions would receive a message that starts with ``prefix``."""
        with self._cond:
            return self._count_unlocked(prefix)

    def wait_for_subscribers(self, n: int = 1, prefix: bytes = b"", timeout: float = 10.0) -> None:
        """Wait until ``n`` subscriptions match ``prefix``; raise StreamError on timeout."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self._count_unlocked(prefix) >= n, timeout)
        if not ok:
            raise StreamError(f"no {n} subscriber(s) for {prefix!r} within {timeout} s")

    def _count_unlocked(self, prefix: bytes) -> int:
        return sum(n for topic, n in self._subs.items() if prefix.startswith(topic))

    def __enter__(self) -> StreamProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"StreamProxy(in={self.in_address!r}, out={self.out_address!r})"


__all__ = ["StreamProxy"]
