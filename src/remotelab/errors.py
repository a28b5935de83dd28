"""Typed errors a remotelab user can meet.

Every error says what was wrong and, where it helps, what to do. Higher layers
(API, CLI) turn them into clear answers instead of tracebacks.
"""

from __future__ import annotations

import errno
from typing import Any


class RemotelabError(Exception):
    """Base class of every error remotelab raises on purpose."""


class LimitError(RemotelabError, ValueError):
    """A value outside a device's soft limits; raised before anything moves."""

    def __init__(self, device: str, quantity: str, value: Any, low: Any, high: Any, unit: str = ""):
        self.device, self.quantity, self.value = device, quantity, value
        self.low, self.high, self.unit = low, high, unit
        u = f" {unit}" if unit else ""
        super().__init__(
            f"{device}: {quantity} {value!r}{u} is outside the soft limits "
            f"[{low}, {high}]{u}; nothing was moved"
        )


class DeviceError(RemotelabError):
    """An operation on a device failed. ``device`` names it."""

    def __init__(self, device: str, message: str):
        self.device = device
        super().__init__(f"{device}: {message}")


class DeviceFault(DeviceError):
    """The device (or its backend) reported a failure while operating."""


class DeviceTimeout(DeviceError):
    """An operation did not finish in time; the device was stopped."""


class OutOfRangeReading(DeviceError):
    """A sensor returned a value outside its measuring range."""


class NotConnectedError(DeviceError):
    """I/O on a device of a lab loaded without connecting (``load_lab(..., connect=False)``).

    Such a lab only validates submissions and describes its devices; its instruments are
    never opened. Run the lab's worker to operate them.
    """


class SampleError(RemotelabError, ValueError):
    """A sample or location is unknown, occupied, or not where it must be."""


class LabFileError(RemotelabError, ValueError):
    """A lab file could not be read or does not follow the lab file schema."""


class UnknownDeviceError(RemotelabError, LookupError):
    """A device name that the lab does not have."""

    def __init__(self, name: str, known: list[str] | tuple[str, ...]):
        self.name, self.known = name, tuple(known)
        super().__init__(f"unknown device {name!r}; this lab has: {', '.join(known)}")

    def __str__(self) -> str:
        return self.args[0]


class SafeStateError(RemotelabError):
    """Some devices could not be brought to their safe state; ``failures`` says which and why."""

    def __init__(self, failures: dict[str, str]):
        self.failures = failures
        detail = "; ".join(f"{k}: {v}" for k, v in failures.items())
        super().__init__(f"devices not in their safe state: {detail}")


class ReservationError(RemotelabError):
    """A device or sample taken, or asked for, against the lab's reservation rules."""


class NestedHoldError(ReservationError):
    """A plan asked for shared devices while it waits for or holds some already (it must ask
    for every device of a block at once: that is what keeps plans from deadlocking)."""

    def __init__(self, holder: str, resources: list[str]):
        self.holder, self.resources = holder, resources
        super().__init__(
            f"experiment {holder} asks for {', '.join(resources) or 'nothing'} while it holds "
            "or waits for shared devices already; hold every device of a block at once"
        )


class DeviceNotReservedError(ReservationError):
    """A plan drove a device that is neither reserved for its experiment nor held by it."""

    def __init__(self, device: str, experiment: str):
        self.device, self.experiment = device, experiment
        super().__init__(
            f"experiment {experiment} drove device {device!r}, which is not reserved for it "
            "(declare it in the plan's parameters or uses=, or hold a shared device in a block)"
        )


class PlanValidationError(RemotelabError, ValueError):
    """A plan submission that cannot run: ``errors`` lists ``{"param", "message"}`` per problem."""

    def __init__(self, plan: str, errors: list[dict[str, Any]]):
        self.plan = plan
        self.errors = [dict(e) for e in errors]
        detail = "; ".join(
            f"{e['param']}: {e['message']}" if e.get("param") else str(e["message"])
            for e in self.errors
        )
        super().__init__(f"plan {plan!r} cannot run: {detail}")


class NoResultError(RemotelabError):
    """A plan ran to its end but found no result (a titration whose pH never rose through an
    equivalence point): the experiment fails saying so."""


class PlanNotAllowedError(RemotelabError, PermissionError):
    """The submitter's role may not run this plan in this lab."""

    def __init__(self, plan: str, role: str, allowed: list[str] | tuple[str, ...]):
        self.plan, self.role, self.allowed = plan, role, tuple(allowed)
        may = ", ".join(self.allowed) if self.allowed else "no plans"
        super().__init__(f"role {role!r} may not run plan {plan!r} in this lab; it may run: {may}")


class UnknownRoleError(RemotelabError, ValueError):
    """A role name remotelab does not know; ``known`` lists the roles it does."""

    def __init__(self, role: str, known: list[str] | tuple[str, ...]):
        self.role, self.known = role, tuple(known)
        super().__init__(f"unknown role {role!r}; the roles are: {', '.join(self.known)}")


class SerialError(DeviceError):
    """A serial-line failure talking to an instrument; names the device and the port."""

    def __init__(self, device: str, port: str, message: str, received: bytes = b""):
        self.port = port
        self.received = received
        super().__init__(device, f"{message} (port {port})")


class SerialTimeout(SerialError):
    """The instrument did not answer a command within its timeout."""


class ProtocolError(SerialError):
    """The instrument answered with bytes that are not a valid reply; ``received`` holds them."""


class InstrumentError(ProtocolError, DeviceFault):
    """The instrument answered a command with an error reply (``code``, ``reply``).

    Both a protocol error (the bytes are in ``received``) and a device fault: the
    instrument itself reported that it could not do what it was asked.
    """

    def __init__(self, device: str, port: str, command: str, code: str, reply: str):
        self.command, self.code, self.reply = command, code, reply
        super().__init__(
            device, port, f"the instrument refused {command!r}: {reply}", reply.encode()
        )


class Disconnected(SerialError):
    """The serial line is down (unplugged, dropped) and could not be reopened."""


class StoreError(RemotelabError):
    """The run store could not be opened, written or queried as asked."""


class StoreWriteError(StoreError):
    """The run store could not keep a document (``full``: its disk is full). A worker that
    meets it holds the lab: every experiment after it would lose its data the same way."""

    def __init__(self, document: str, store: str, cause: BaseException):
        text = str(cause) or type(cause).__name__
        self.document = document
        self.full = "full" in text.lower() or getattr(cause, "errno", None) == errno.ENOSPC
        self.cause = text
        what = "the disk of the run store is full" if self.full else "the run store is unwritable"
        super().__init__(f"{what}: could not keep the {document} document in {store}: {text}")


class RunNotFound(StoreError, LookupError):
    """No stored run has the given uid (or the uid prefix matches several)."""


class ExportError(RemotelabError, ValueError):
    """A run could not be exported in the format asked for."""


class StreamError(RemotelabError):
    """The live document stream could not be published or subscribed to."""


class AuthenticationError(RemotelabError):
    """No API token, or a token that is malformed, unknown or revoked."""


class TooManyAttemptsError(RemotelabError):
    """Too many failed authentications from one address: wait ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class PermissionDeniedError(RemotelabError, PermissionError):
    """The caller's role (or lab access) does not allow this action."""


class AccountError(RemotelabError, ValueError):
    """A user or token operation that cannot be done (bad name, unknown role, duplicate)."""


class UnknownAccountError(AccountError, LookupError):
    """No user or token with this name or id."""


class UnknownLabError(RemotelabError, LookupError):
    """A lab name that this gateway does not serve."""


class AccountExistsError(AccountError):
    """A user with this name exists already."""


class UnknownPlanError(RemotelabError, LookupError):
    """A plan name that the lab does not offer."""


class QueueError(RemotelabError):
    """The experiment queue (or the Prefect server behind it) could not do what was asked."""


class ExperimentNotFound(QueueError, LookupError):
    """No experiment with this id in this lab's queue."""


class ExperimentStateError(QueueError):
    """The experiment is not in a state that allows this (e.g. moving one that already runs)."""


class SeveralRunningError(ExperimentStateError):
    """A lab-wide control (pause, resume, stop) while several experiments run: name one.

    ``running`` lists their ids (the gateway answers 409 with them)."""

    def __init__(self, lab: str, running: list[str]):
        self.lab, self.running = lab, list(running)
        super().__init__(
            f"several experiments run on lab {lab}: {', '.join(self.running)}; name the one "
            "meant (e.g. remotelab lab pause EXPERIMENT, or POST …/experiments/{id}/pause)"
        )


class WorkerUnavailable(QueueError):
    """No live worker of the lab answered on its control channel."""


class NotificationError(RemotelabError, ValueError):
    """A notification target that cannot be used (an apprise URL apprise does not know, an
    event kind that does not exist)."""


class SubscriptionNotFound(NotificationError, LookupError):
    """No notification subscription with this id in this lab (or none the caller may see)."""


class ApiError(RemotelabError):
    """The gateway refused a request: ``status`` (HTTP), ``detail``, per-parameter ``errors``."""

    def __init__(
        self, status: int, detail: str, kind: str = "", errors: list[dict[str, Any]] | None = None
    ):
        self.status, self.detail, self.kind = status, detail, kind
        self.errors = [dict(e) for e in errors or []]
        super().__init__(f"{detail} (HTTP {status})")


class ApiNotFound(ApiError, LookupError):
    """The gateway has no such lab, experiment, plan, run, user or token (HTTP 404)."""


class ApiConflict(ApiError):
    """The thing is not in a state that allows the request (HTTP 409)."""


class ApiUnauthorized(ApiError):
    """No token, or a malformed, unknown or revoked one (HTTP 401)."""


class ApiForbidden(ApiError, PermissionError):
    """The token's role or lab access does not allow the request (HTTP 403)."""


class ApiInvalid(ApiError, ValueError):
    """The request, or a plan's parameters, are invalid (HTTP 422); see ``errors``."""


class CommandLineError(RemotelabError, ValueError):
    """A command's options contradict each other, or do not fit the side it works on (a lab-side
    option with a gateway, a gateway option on this machine)."""
