"""Requests Prefect answers 503 (a busy database) are sent again after milliseconds, not the
Prefect client's seconds; a server that stays busy still gets its 503 through."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from remotelab.queue.prefect_api import BusyRetryTransport


class Busy:
    """A local HTTP server answering 503 to the first ``busy`` requests, then 200."""

    def __init__(self, busy: int):
        self.busy = busy
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                code = 503 if len(outer.bodies) <= outer.busy else 201
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def serve():
    servers: list[Busy] = []

    def start(busy: int) -> Busy:
        servers.append(Busy(busy))
        return servers[-1]

    yield start
    for s in servers:
        s.server.shutdown()
        s.server.server_close()


def test_a_busy_answer_is_retried_with_the_same_body(serve):
    server = serve(busy=2)
    with httpx.Client(transport=BusyRetryTransport()) as client:
        response = client.post(f"{server.url}/api/flow_runs/x/set_state", json={"state": "P"})
    assert response.status_code == 201
    assert len(server.bodies) == 3
    assert len(set(server.bodies)) == 1 and b'"P"' in server.bodies[0]


def test_a_server_that_stays_busy_gets_its_503_through(serve):
    server = serve(busy=100)
    delays = (0.001, 0.001)
    with httpx.Client(transport=BusyRetryTransport(delays)) as client:
        response = client.post(f"{server.url}/api/x", json={})
    assert response.status_code == 503
    assert len(server.bodies) == len(delays) + 1


def test_prefect_clients_use_it_unless_a_proxy_is_set(monkeypatch):
    from remotelab.queue import prefect_api

    for name in prefect_api.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    client = prefect_api.connect("http://127.0.0.1:9/api")
    try:
        assert isinstance(client._client._transport, BusyRetryTransport)
    finally:
        prefect_api._close(client)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    client = prefect_api.connect("http://127.0.0.1:9/api")
    try:
        assert not isinstance(client._client._transport, BusyRetryTransport)
    finally:
        prefect_api._close(client)
