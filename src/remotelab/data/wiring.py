"""Attach the run store and the live-stream publisher to a RunEngine, and detach them again.

The store is subscribed before the publisher, so a document is in the store before any
watcher sees it. The publisher also follows the RunEngine's state (pause, resume) through
``RE.state_hook``; a hook already set there keeps being called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bluesky import RunEngine

Callback = Callable[[str, dict[str, Any]], Any]


class EngineStateFollower(Protocol):
    """A document callback that also follows the RunEngine's state (a ``StreamPublisher``)."""

    def __call__(self, name: str, doc: dict[str, Any]) -> None: ...

    def on_engine_state(
        self, new_state: Any, old_state: Any = None, experiment: str | None = None
    ) -> None: ...


@dataclass
class Attachment:
    """What :func:`attach` did: ``tokens`` for ``RE.unsubscribe``; :meth:`detach` undoes it."""

    engine: RunEngine
    tokens: list[int] = field(default_factory=list)
    state_hook: Callable[[Any, Any], None] | None = None
    previous_state_hook: Callable[[Any, Any], None] | None = None

    def detach(self) -> None:
        """Unsubscribe everything and put back the state hook that was there before."""
        for token in self.tokens:
            self.engine.unsubscribe(token)
        self.tokens = []
        if self.state_hook is not None and self.engine.state_hook is self.state_hook:
            self.engine.state_hook = self.previous_state_hook
        self.state_hook = None

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


def attach(
    RE: RunEngine,
    *,
    store: Callback | None = None,
    publisher: EngineStateFollower | None = None,
    follow_state: bool = True,
    experiment: Callable[[], str | None] | None = None,
) -> Attachment:
    """Subscribe ``store`` (a :class:`~remotelab.data.RunStore`) and ``publisher`` (a
    :class:`~remotelab.stream.StreamPublisher`) to ``RE``, the store first.

    With ``follow_state`` the publisher publishes the RunEngine's pause/resume as they
    happen (chained after any ``RE.state_hook`` already set). With ``experiment`` (the id of
    the experiment this RunEngine runs now, asked at each change: one RunEngine per lane),
    each change is published as that experiment's own (``experiment=experiment()``).
    Closing the store and the publisher stays with the caller.
    """
    attachment = Attachment(RE)
    if store is not None:
        attachment.tokens.append(RE.subscribe(store))
    if publisher is not None:
        attachment.tokens.append(RE.subscribe(publisher))
        if follow_state:
            previous = RE.state_hook
            follow = publisher.on_engine_state

            def state_hook(new_state: Any, old_state: Any) -> None:
                if previous is not None:
                    previous(new_state, old_state)
                if experiment is None:
                    follow(new_state, old_state)
                else:
                    follow(new_state, old_state, experiment=experiment())

            attachment.previous_state_hook = previous
            attachment.state_hook = state_hook
            # bluesky declares state_hook by assigning None; it takes any such callable
            RE.state_hook = state_hook  # type: ignore[assignment]
    return attachment


__all__ = ["Attachment", "EngineStateFollower", "attach"]
