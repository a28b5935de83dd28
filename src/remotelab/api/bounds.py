"""Bounds on what a request may carry, checked before any route sees it.

- a body over ``REMOTELAB_MAX_BODY`` bytes (default 1 MiB) is answered 413;
- a JSON body nested deeper than ``REMOTELAB_MAX_JSON_DEPTH`` (default 32), or holding a
  non-finite number (``NaN``, ``Infinity``: not JSON, and stored as null by most), is
  answered 422;
- a control character (other than tab, newline, carriage return) or a bidirectional
  override in any string of a JSON body or of the query is answered 422, naming where —
  such text can hide what a reason, a name or a parameter really says when it is shown.

Every refusal has the gateway's error body (:class:`~remotelab.api.errors.ErrorBody`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from remotelab.api.errors import ErrorBody, ParamError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: C0 controls but tab, newline and carriage return; DEL; C1 controls; bidi embeddings,
#: overrides and isolates; the line and paragraph separators
FORBIDDEN_CHARS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class InputRejected(Exception):
    """A request outside the bounds: its status, what was wrong and where."""

    def __init__(self, status: int, detail: str, param: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.param = status, detail, param


def _no_constants(name: str) -> Any:
    raise InputRejected(422, f"{name} is not a number JSON allows: send a finite number")


def _where(path: list[str | int]) -> str:
    return ".".join(str(p) for p in path) or "body"


def _check_text(text: str, path: list[str | int]) -> None:
    bad = FORBIDDEN_CHARS.search(text)
    if bad is not None:
        raise InputRejected(
            422,
            f"{_where(path)} holds the control or bidirectional character "
            f"U+{ord(bad.group()):04X}; remove it",
            _where(path),
        )


def check_json(value: Any, *, max_depth: int) -> None:
    """Raise :class:`InputRejected` if ``value`` nests deeper than ``max_depth`` or holds a
    forbidden character in a key or a string (walked without recursion)."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if len(path) > max_depth:
            raise InputRejected(
                422, f"the body nests deeper than {max_depth} levels (at {_where(path)})"
            )
        if isinstance(node, str):
            _check_text(node, path)
        elif isinstance(node, dict):
            for key, item in node.items():
                _check_text(key, [*path, key])
                stack.append((item, [*path, key]))
        elif isinstance(node, list):
            stack.extend((item, [*path, i]) for i, item in enumerate(node))


def parse_json(body: bytes, *, max_depth: int) -> Any:
    """``body`` parsed as JSON within the bounds, or :class:`InputRejected`."""
    try:
        value = json.loads(body, parse_constant=_no_constants)
    except RecursionError:
        raise InputRejected(422, f"the body nests deeper than {max_depth} levels") from None
    except ValueError:  # not JSON: the route's own validation answers it
        return None
    check_json(value, max_depth=max_depth)
    return value


class InputBounds:
    """ASGI middleware refusing requests outside the bounds (see the module)."""

    def __init__(self, app: ASGIApp, *, max_body: int, max_depth: int):
        self.app, self.max_body, self.max_depth = app, max_body, max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
                _check_text(key, [key])
                _check_text(value, [key])
            if scope["method"] not in _BODY_METHODS:
                await self.app(scope, receive, send)
                return
            body = await self._read(scope, receive)
            if body and b"json" in dict(scope.get("headers") or []).get(b"content-type", b""):
                parse_json(body, max_depth=self.max_depth)
        except InputRejected as exc:
            await _refuse(send, exc)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise InputRejected(413, self._too_large(int(declared)))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise InputRejected(413, self._too_large(size, at_least=True))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _too_large(self, size: int, *, at_least: bool = False) -> str:
        return (
            f"the request body is {'over ' if at_least else ''}{size} bytes; the gateway "
            f"takes at most {self.max_body} (REMOTELAB_MAX_BODY)"
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read, once; then the client's own messages (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, exc: InputRejected) -> None:
    kind = "RequestTooLarge" if exc.status == 413 else "InvalidInput"
    errors = [ParamError(param=exc.param, message=exc.detail)] if exc.param else []
    payload = ErrorBody(detail=exc.detail, type=kind, errors=errors).model_dump_json().encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


__all__ = ["FORBIDDEN_CHARS", "InputBounds", "InputRejected", "check_json", "parse_json"]
