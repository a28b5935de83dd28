"""How the gateway answers errors: remotelab's typed errors become 4xx with a body that says
what was wrong; nothing a caller sends should end in a 500.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from remotelab import errors as E

log = logging.getLogger(__name__)


class ParamError(BaseModel):
    """One problem with one parameter (``param`` is None for the request as a whole)."""

    param: str | None = None
    message: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    detail: str = Field(description="what was wrong, in one sentence")
    type: str = Field(description="the kind of error, e.g. PlanValidationError")
    errors: list[ParamError] = Field(
        default_factory=list, description="per-parameter problems, if any"
    )
    running: list[str] | None = Field(
        None, description="the experiments running, when a lab-wide control must name one"
    )


#: (error class name in remotelab.errors, HTTP status), first match wins; names so that the
#: gateway keeps working whichever optional layers (queue, data) are installed
STATUS_BY_NAME: list[tuple[str, int]] = [
    ("TooManyAttemptsError", 429),
    ("AuthenticationError", 401),
    ("PermissionDeniedError", 403),
    ("PlanNotAllowedError", 403),
    ("PlanValidationError", 422),
    ("AccountExistsError", 409),
    ("SeveralRunningError", 409),
    ("ExperimentStateError", 409),
    ("WorkerUnavailable", 409),
]


def status_for(exc: BaseException) -> int:
    """The HTTP status that answers ``exc``.

    Beyond the table: unknown things (``LookupError``) 404, bad values 422, other
    remotelab errors (a state that does not allow the action) 409, an unreachable
    service 503, anything else 500.
    """
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code
    if isinstance(exc, RequestValidationError):
        return 422
    for name, status in STATUS_BY_NAME:
        cls = getattr(E, name, None)
        if cls is not None and isinstance(exc, cls):
            return status
    if isinstance(exc, E.RemotelabError):
        if isinstance(exc, LookupError):
            return 404
        queue_error = getattr(E, "QueueError", None)
        if isinstance(exc, ValueError | TypeError) or (
            queue_error is not None and isinstance(exc, queue_error)
        ):
            return 422
        return 409
    if _is_unreachable(exc):
        return 503
    upstream = _upstream_status(exc)
    if upstream is not None:
        if upstream >= 500:
            return 503
        return 404 if upstream == 404 else 422
    return 500


def _upstream_status(exc: BaseException) -> int | None:
    """The status of an error answer from a service behind the gateway (Prefect's API)."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    return None


def _is_unreachable(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, httpx.TransportError | ConnectionError)


_PATH = re.compile(r"(?<![\w.:/])/[^\s'\"]+")


def without_paths(text: str) -> str:
    """``text`` with the server's file paths in it (a path, or its folder, on this machine)
    replaced: an error answer says what was wrong, not where the gateway keeps its files."""

    def scrub(match: re.Match[str]) -> str:
        found = match.group().rstrip(".,;:)")
        tail = match.group()[len(found) :]
        path = Path(found)
        if len(path.parts) > 2 and (path.exists() or path.parent.exists()):
            return "<server path>" + tail
        return match.group()

    return _PATH.sub(scrub, text)


def body_for(exc: BaseException) -> ErrorBody:
    if isinstance(exc, E.PlanValidationError):
        errs = [ParamError(param=e.get("param"), message=str(e["message"])) for e in exc.errors]
        return ErrorBody(detail=str(exc), type=type(exc).__name__, errors=errs)
    if isinstance(exc, E.SeveralRunningError):
        return ErrorBody(detail=str(exc), type=type(exc).__name__, running=exc.running)
    if isinstance(exc, StarletteHTTPException):
        return ErrorBody(detail=str(exc.detail), type="HTTPError")
    if _is_unreachable(exc):
        return ErrorBody(
            detail=f"a lab service (the queue's Prefect server) is unreachable: {exc}",
            type="ServiceUnavailable",
        )
    upstream = _upstream_status(exc)
    if upstream is not None:
        what = "is overloaded or failed; try again" if upstream >= 500 else "refused the request"
        return ErrorBody(
            detail=f"the lab's queue service (Prefect) {what} (its answer: HTTP {upstream})",
            type="UpstreamError",
        )
    if isinstance(exc, E.RemotelabError):
        return ErrorBody(detail=without_paths(str(exc)), type=type(exc).__name__)
    return ErrorBody(detail=f"internal error ({type(exc).__name__})", type="InternalError")


def error_response(exc: BaseException) -> JSONResponse:
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, E.TooManyAttemptsError):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    body = body_for(exc).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errs = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        errs.append(ParamError(param=".".join(loc) or None, message=str(err.get("msg", ""))))
    detail = "; ".join(f"{e.param}: {e.message}" if e.param else e.message for e in errs)
    body = ErrorBody(
        detail=f"invalid request: {detail}", type="RequestValidationError", errors=errs
    )
    return JSONResponse(body.model_dump(), status_code=422)


def install_handlers(app: FastAPI) -> None:
    """Map every error to its answer on ``app``."""

    async def on_remotelab(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _validation_response(exc)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            body_for(exc).model_dump(),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    async def on_other(_: Request, exc: Exception) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.exception("unexpected error in the gateway", exc_info=exc)
        return error_response(exc)

    app.add_exception_handler(E.RemotelabError, on_remotelab)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_other)


#: the error answers every route may give, for the OpenAPI document
def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        401: "no token, or a malformed, unknown or revoked one",
        403: "the caller's role or lab access does not allow this",
        404: "no such lab, experiment, plan, run, user or token",
        409: "the thing is not in a state that allows this",
        422: "the request (or a plan's parameters) is invalid",
        429: "too many failed authentications from this address: wait Retry-After seconds",
        503: "a lab service is unreachable",
    }
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}


__all__ = [
    "ErrorBody",
    "ParamError",
    "body_for",
    "error_response",
    "error_responses",
    "install_handlers",
    "status_for",
]
