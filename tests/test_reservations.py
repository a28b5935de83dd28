"""The reservation book on its own: all-or-nothing reservations, FIFO blocks, no deadlock,
and never two holders of one resource, whatever threads race for it."""

from __future__ import annotations

import random
import threading

import pytest

from remotelab.errors import NestedHoldError
from remotelab.lab.reservations import Reservations


def test_a_reservation_is_all_or_nothing():
    book = Reservations()
    assert book.try_reserve("E1", {"heater", "thermometer"})
    assert not book.try_reserve("E2", {"ph_meter", "heater"})
    assert book.holder_of("ph_meter") is None  # nothing of E2's was taken
    assert book.try_reserve("E2", {"ph_meter"})
    assert sorted(book.release("E1")) == ["heater", "thermometer"]
    assert book.try_reserve("E3", {"heater"})


def test_a_protected_resource_is_not_taken_by_a_later_experiment():
    book = Reservations()
    assert not book.try_reserve("E2", {"heater"}, protect={"heater"})
    assert book.holder_of("heater") is None


def test_blocks_are_granted_first_come_first_served():
    book = Reservations()
    first = book.enqueue("E1", {"arm"})
    assert first.granted.is_set()
    second, third = book.enqueue("E2", {"arm"}), book.enqueue("E3", {"arm"})
    assert not second.granted.is_set() and not third.granted.is_set()
    assert [w["holder"] for w in book.snapshot()["arm"]["waiters"]] == ["E2", "E3"]
    assert book.waits("E3") == ["arm"]
    book.cancel(first)
    assert second.granted.is_set() and not third.granted.is_set()
    book.cancel(second)
    assert third.granted.is_set()


def test_a_later_ticket_does_not_overtake_an_earlier_one_on_a_shared_resource():
    book = Reservations()
    arm = book.enqueue("E1", {"arm"})
    both = book.enqueue("E2", {"arm", "balance"})  # waits for the arm
    balance = book.enqueue("E3", {"balance"})  # the balance is free, but E2 is ahead for it
    assert not both.granted.is_set() and not balance.granted.is_set()
    book.cancel(arm)
    assert both.granted.is_set() and not balance.granted.is_set()


def test_a_holder_may_not_ask_for_more_while_it_holds_a_block():
    book = Reservations()
    book.enqueue("E1", {"arm"})
    with pytest.raises(NestedHoldError):
        book.enqueue("E1", {"balance"})


def test_release_tells_who_listens_what_was_freed():
    book, freed = Reservations(), []
    book.on_release.append(freed.append)
    book.try_reserve("E1", {"heater"})
    book.release("E1")
    book.release("E1")  # nothing more to free: nobody is told
    assert freed == [["heater"]]


@pytest.mark.parametrize("seed", range(5))
def test_threads_racing_never_hold_one_resource_together_nor_deadlock(seed):
    """Eight threads take random blocks of the shared devices in random order; each records,
    under the book's word, who holds what: no resource ever has two holders at once, and
    every thread gets all its blocks (a deadlock would leave one waiting)."""
    rng = random.Random(seed)
    book = Reservations()
    resources = ["arm", "balance", "spectrometer", "heater"]
    holding: dict[str, str] = {}
    overlaps: list[tuple[str, str, str]] = []
    guard = threading.Lock()
    plans = {
        f"E{i}": [frozenset(rng.sample(resources, rng.randint(1, 3))) for _ in range(20)]
        for i in range(8)
    }
    done: dict[str, int] = {}

    def work(holder: str) -> None:
        for wanted in plans[holder]:
            ticket = book.enqueue(holder, wanted)
            assert ticket.granted.wait(30), f"{holder} never got {sorted(wanted)}"
            with guard:
                for r in wanted:
                    if r in holding:
                        overlaps.append((r, holding[r], holder))
                    holding[r] = holder
            with guard:
                for r in wanted:
                    del holding[r]
            book.cancel(ticket)
        done[holder] = len(plans[holder])

    threads = [threading.Thread(target=work, args=(h,)) for h in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert overlaps == []
    assert done == {h: 20 for h in plans}
    assert book.snapshot() == {}
