"""What the client hands back: a :class:`Submission` (an experiment that can wait for its end
and follow its documents) and live :class:`Event` s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from remotelab.errors import ApiError
from remotelab.queue.models import Experiment

if TYPE_CHECKING:
    from remotelab.client import Client


@dataclass(frozen=True)
class Event:
    """One live update: ``kind`` is ``document``, ``status``, ``end`` or ``timeout``."""

    kind: str
    data: dict[str, Any]

    @property
    def document(self) -> tuple[str, dict[str, Any]] | None:
        """``(name, doc)`` for a document event, else None."""
        if self.kind != "document":
            return None
        return self.data["name"], self.data["doc"]


class Submission(Experiment):
    """An experiment as the client knows it, with :meth:`wait` and :meth:`documents`."""

    _client: Any = None  # the Client it came from (bound by it)

    def bind(self, client: Client) -> Submission:
        self._client = client
        return self

    def _c(self) -> Client:
        if self._client is None:
            raise ApiError(0, "this experiment is not bound to a client")
        return self._client

    def refresh(self) -> Submission:
        """The experiment as it is now."""
        return self._c().experiment(self.id, lab=self.lab)

    def wait(self, timeout: float = 600.0, poll: float = 0.25) -> Submission:
        """Wait until the experiment ends; the finished experiment (``TimeoutError`` if not
        within ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            exp = self.refresh()
            if exp.state.finished:
                return exp
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"experiment {self.id} still {exp.state.value} after {timeout} s"
                )
            time.sleep(poll)

    def documents(self, timeout: float | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """The experiment's bluesky documents ``(name, doc)``, as they are emitted (those
        already stored first); the iteration ends when the experiment ends."""
        for event in self._c().events(lab=self.lab, experiment=self.id, timeout=timeout):
            if event.document is not None:
                yield event.document

    def cancel(self, reason: str = "") -> Submission:
        return self._c().cancel(self.id, reason=reason, lab=self.lab)

    def edit(self, params: dict[str, Any]) -> Submission:
        """Change its parameters before it starts (see :meth:`Client.edit`)."""
        return self._c().edit(self.id, params, lab=self.lab)


__all__ = ["Event", "Submission"]
