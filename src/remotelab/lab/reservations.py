"""The reservation book: which experiment drives which device (or sample) now, and who waits.

A resource is a device name, or ``sample:<id>``. :meth:`Reservations.try_reserve` takes a set
of resources for a holder at once or not at all, never waiting (the dispatcher reserves a whole
run's devices so). :meth:`Reservations.enqueue` asks for a set and waits in line: a ticket is
granted when every resource it wants is free and no earlier ticket wants any of them (FIFO,
all at once). A holder may not ask for more while it waits or holds a block, so holders of
blocks never wait on each other: there is no deadlock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from remotelab.errors import NestedHoldError


@dataclass(eq=False)
class Ticket:
    """A holder's request for resources, granted all at once."""

    holder: str
    resources: frozenset[str]
    since: float
    granted: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Hold:
    holder: str
    since: float
    block: bool


class Reservations:
    """The book of one lab (thread-safe; ``clock`` gives the times it reports)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._holds: dict[str, _Hold] = {}
        self._line: list[Ticket] = []  # waiting tickets, oldest first
        self._granted: dict[str, list[Ticket]] = {}  # holder → its granted tickets
        #: called (outside the lock) with the resources freed, after anything is freed
        self.on_release: list[Callable[[list[str]], None]] = []

    # -- taking ---------------------------------------------------------------------------
    def try_reserve(
        self, holder: str, resources: Iterable[str], *, protect: Iterable[str] = ()
    ) -> bool:
        """Reserve every one of ``resources`` for ``holder`` now, or none: False if one is
        held by another, wanted by a waiting ticket, or in ``protect``."""
        wanted = set(resources)
        kept = set(protect)
        with self._lock:
            waited = {r for t in self._line for r in t.resources}
            for resource in wanted:
                hold = self._holds.get(resource)
                if hold is not None and hold.holder != holder:
                    return False
                if hold is None and (resource in waited or resource in kept):
                    return False
            now = self._clock()
            for resource in wanted:
                self._holds.setdefault(resource, _Hold(holder, now, False))
        return True

    def enqueue(self, holder: str, resources: Iterable[str]) -> Ticket:
        """Ask for ``resources`` for a block: a ticket, granted at once if they are free and
        nobody waits ahead for them, else when they come free in turn.

        Raises :class:`NestedHoldError` if ``holder`` already waits or holds a block.
        """
        with self._lock:
            own = {r for r, h in self._holds.items() if h.holder == holder and not h.block}
            # what it has for the whole run is not asked for again (nor given back after)
            ticket = Ticket(holder, frozenset(resources) - own, self._clock())
            if self._granted.get(holder) or any(t.holder == holder for t in self._line):
                raise NestedHoldError(holder, sorted(ticket.resources))
            self._line.append(ticket)
            self._grant()
        return ticket

    def _grant(self) -> None:
        """Grant waiting tickets in order (under the lock)."""
        blocked: set[str] = set()
        for ticket in list(self._line):
            free = all(
                r not in self._holds or self._holds[r].holder == ticket.holder
                for r in ticket.resources
            )
            if free and not (ticket.resources & blocked):
                self._line.remove(ticket)
                now = self._clock()
                for resource in ticket.resources:
                    if resource not in self._holds:
                        self._holds[resource] = _Hold(ticket.holder, now, True)
                self._granted.setdefault(ticket.holder, []).append(ticket)
                ticket.granted.set()
            blocked |= ticket.resources

    # -- giving back ------------------------------------------------------------------------
    def cancel(self, ticket: Ticket) -> None:
        """Withdraw a waiting ticket, or give back what a granted one took."""
        with self._lock:
            if ticket in self._line:
                self._line.remove(ticket)
                self._grant()
                return
        if ticket.granted.is_set():
            self.release(ticket.holder, ticket.resources)

    def release(self, holder: str, resources: Iterable[str] | None = None) -> list[str]:
        """Give back ``resources`` (None: everything ``holder`` holds, and its waiting
        tickets); what was freed."""
        with self._lock:
            if resources is None:
                self._line = [t for t in self._line if t.holder != holder]
                self._granted.pop(holder, None)
                chosen = [r for r, h in self._holds.items() if h.holder == holder]
            else:
                chosen = [r for r in resources if r in self._holds]
                chosen = [r for r in chosen if self._holds[r].holder == holder]
                tickets = self._granted.get(holder, [])
                self._granted[holder] = [t for t in tickets if not t.resources <= set(chosen)]
                if not self._granted[holder]:
                    del self._granted[holder]
            for resource in chosen:
                del self._holds[resource]
            self._grant()
        if chosen:
            for callback in list(self.on_release):
                callback(list(chosen))
        return chosen

    # -- reading ----------------------------------------------------------------------------
    def holder_of(self, resource: str) -> str | None:
        with self._lock:
            hold = self._holds.get(resource)
            return hold.holder if hold else None

    def held_by(self, holder: str) -> set[str]:
        with self._lock:
            return {r for r, h in self._holds.items() if h.holder == holder}

    def waits(self, holder: str) -> list[str]:
        """The resources ``holder``'s waiting ticket still lacks."""
        with self._lock:
            for ticket in self._line:
                if ticket.holder == holder:
                    return sorted(
                        r
                        for r in ticket.resources
                        if r in self._holds and self._holds[r].holder != holder
                    ) or sorted(ticket.resources)
        return []

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Resource → holder, since when, whether for a block, and who waits (since when);
        only resources held or waited for."""
        with self._lock:
            out: dict[str, dict[str, Any]] = {
                r: {"holder": h.holder, "since": h.since, "block": h.block, "waiters": []}
                for r, h in self._holds.items()
            }
            for ticket in self._line:
                for resource in sorted(ticket.resources):
                    entry = out.setdefault(
                        resource, {"holder": None, "since": None, "block": False, "waiters": []}
                    )
                    entry["waiters"].append({"holder": ticket.holder, "since": ticket.since})
            return out


__all__ = ["Reservations", "Ticket"]
