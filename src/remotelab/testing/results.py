"""What a plan run in a test gave: its documents, and the start, stop and events in them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from remotelab.errors import RemotelabError

Document = tuple[str, dict[str, Any]]


class NoRunError(RemotelabError, LookupError):
    """The plan opened no run, so it has no start document, stop document or uid."""


def events(documents: Sequence[Document], stream: str = "primary") -> list[dict[str, Any]]:
    """The event documents of ``stream`` among ``documents``, in order."""
    descriptors = {
        doc["uid"] for name, doc in documents if name == "descriptor" and doc["name"] == stream
    }
    return [doc for name, doc in documents if name == "event" and doc["descriptor"] in descriptors]


@dataclass(frozen=True)
class PlanResult:
    """One plan run by ``run_plan``: the validated parameters and every document emitted.

    ``start``, ``stop``, ``uid`` and ``exit_status`` are those of the plan's first run
    (``uids`` has all of them); :meth:`events` and :meth:`data` span all its runs.
    """

    plan: str
    params: dict[str, Any]
    documents: list[Document] = field(default_factory=list)

    @property
    def uids(self) -> list[str]:
        return [doc["uid"] for name, doc in self.documents if name == "start"]

    @property
    def start(self) -> dict[str, Any]:
        for name, doc in self.documents:
            if name == "start":
                return doc
        raise NoRunError(f"plan {self.plan!r} opened no run")

    @property
    def uid(self) -> str:
        return str(self.start["uid"])

    @property
    def stop(self) -> dict[str, Any]:
        uid = self.uid
        for name, doc in self.documents:
            if name == "stop" and doc["run_start"] == uid:
                return doc
        raise NoRunError(f"the run {uid} of plan {self.plan!r} has no stop document")

    @property
    def exit_status(self) -> str:
        """``success``, ``abort`` or ``fail``: how the plan's first run ended."""
        return str(self.stop["exit_status"])

    def events(self, stream: str = "primary") -> list[dict[str, Any]]:
        """The plan's events in ``stream``, in order."""
        return events(self.documents, stream)

    def data(self, key: str, stream: str = "primary") -> list[Any]:
        """The values of ``key`` in the plan's events of ``stream``."""
        return [event["data"][key] for event in self.events(stream)]


__all__ = ["Document", "NoRunError", "PlanResult", "events"]
