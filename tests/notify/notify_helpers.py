"""Real local notification targets: an SMTP server (aiosmtpd) and a webhook receiver
(http.server), both on loopback; a target that accepts and never answers; a lab file with a
``notify:`` section."""

from __future__ import annotations

import email
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller

from remotelab.lab import shipped_lab_text

WAIT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A loopback port nothing listens on (a target that is down)."""
    return free_port()


def wait_until(check: Callable[[], Any], timeout: float = WAIT, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


class Mailbox:
    """An SMTP server on loopback keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.messages.append((list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def url(self, to: str) -> str:
        """The apprise URL of mail to ``to`` through this server (plain SMTP, no login)."""
        return f"mailto://127.0.0.1:{self.port}?from=remotelab@lab.example.org&to={to}"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for rcpt, m in self.messages if address in rcpt]

    def wait_for(self, address: str, subject: str = "", timeout: float = WAIT) -> EmailMessage:
        """The first mail to ``address`` whose subject holds ``subject``."""

        def found() -> EmailMessage | None:
            return next((m for m in self.to(address) if subject in str(m["subject"])), None)

        return wait_until(found, timeout, f"a mail to {address} about {subject!r}")


class Webhook(ThreadingHTTPServer):
    """An HTTP server on loopback keeping every JSON body posted to it, by path."""

    daemon_threads = True

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook._lock:
                    hook.posts.append((self.path, json.loads(body or b"{}")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def at(self, path: str = "/hook") -> list[dict[str, Any]]:
        with self._lock:
            return [body for p, body in self.posts if p == path]

    def wait_for(self, path: str, text: str = "", timeout: float = WAIT) -> dict[str, Any]:
        """The first post to ``path`` whose title or body holds ``text``."""

        def found() -> dict[str, Any] | None:
            return next(
                (b for b in self.at(path) if text in b.get("title", "") + b.get("message", "")),
                None,
            )

        return wait_until(found, timeout, f"a post to {path} with {text!r}")


class Silent:
    """A loopback server that accepts connections and never answers (a hung target)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hung?cto=300&rto=300"  # it waits, not apprise

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


def write_lab(directory: Path, notify: list[dict[str, Any]] | None = None) -> Path:
    """The shipped simulated lab under a fresh name, with ``notify`` targets: researchers
    run measure and scan, a researcher's scan waits for approval; plan ``ask`` asks the
    operator."""
    data = yaml.safe_load(shipped_lab_text("sim"))
    data["name"] = f"n{uuid.uuid4().hex[:8]}"
    data["plans"] = {
        "modules": ["notify_test_plans"],
        "roles": {"researcher": ["measure", "scan", "ask"]},
        "approval": {"plans": ["scan"]},
    }
    if notify:
        data["notify"] = notify
    path = directory / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
