"""Serve the gateway app with uvicorn on a thread of this process (the demo, tests)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from remotelab.errors import RemotelabError


class GatewayServer:
    """A uvicorn server of an app on its own thread; :meth:`stop` ends it gracefully."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8000):
        self.app = app
        self.config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(
            target=self.server.run, name="remotelab-gateway", daemon=True
        )
        self.url = f"http://{host}:{port}"

    def start(self, timeout: float = 30.0) -> GatewayServer:
        """Start serving; return once uvicorn listens (:class:`RemotelabError` if it does not)."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RemotelabError(f"the gateway did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """End the live streams, then let uvicorn shut down gracefully."""
        self.app.state.gateway.closing.set()  # live streams end now
        self.server.should_exit = True
        self.thread.join(timeout)


__all__ = ["GatewayServer"]
