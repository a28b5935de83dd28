"""The worker's outbox: records kept on disk, delivered in order, retried while Prefect cannot
be reached, set aside when Prefect refuses them, taken over from a worker that died."""

from __future__ import annotations

import subprocess
import sys
import threading

import httpx
import pytest

from remotelab.worker.alerts import Alerts
from remotelab.worker.link import Link
from remotelab.worker.outbox import MAX_REFUSALS, Outbox


class Receiver:
    """Stands for Prefect: takes records, or is down (raises a connection error)."""

    def __init__(self):
        self.got: list[tuple[str, dict]] = []
        self.down = False
        self.refuse: set[str] = set()
        self.delivered = threading.Event()

    def handler(self, kind: str):
        def take(payload: dict) -> None:
            if self.down:
                raise httpx.ConnectError("connection refused")
            if payload.get("name") in self.refuse:
                raise ValueError(f"no run {payload['name']}")
            self.got.append((kind, payload))
            self.delivered.set()

        return take


def outbox(path, receiver: Receiver, owner: str = "w1", **kw) -> Outbox:
    link = Link("Prefect", Alerts(), first=0.01, cap=0.05)
    handlers = {k: receiver.handler(k) for k in ("state", "labels", "record")}
    return Outbox(path, owner=owner, handlers=handlers, link=link, scope="lab", **kw)


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_records_are_delivered_in_order_per_experiment(tmp_path):
    rx = Receiver()
    box = outbox(tmp_path / "o.sqlite", rx)
    for exp in ("a", "b"):
        box.put(exp, "state", {"name": f"{exp}-state"})
        box.put(exp, "labels", {"name": f"{exp}-labels"})
        box.put(exp, "record", {"name": f"{exp}-record"})
    assert box.flush(5)
    assert [p["name"] for _, p in rx.got] == [
        "a-state",
        "a-labels",
        "a-record",
        "b-state",
        "b-labels",
        "b-record",
    ]
    assert box.pending() == [] and box.delivered == 6
    box.close()


def test_the_fast_path_does_not_jump_ahead_of_its_experiments_earlier_records(tmp_path):
    rx = Receiver()
    box = outbox(tmp_path / "o.sqlite", rx)
    box.put("a", "state", {"name": "first"})
    later = box.put("a", "labels", {"name": "second"})
    assert not box.deliver(later)  # the state of "a" waits ahead of it
    assert rx.got == []
    box.close()


def test_an_outage_keeps_records_until_prefect_is_back_and_the_link_says_so(tmp_path):
    rx = Receiver()
    rx.down = True
    box = outbox(tmp_path / "o.sqlite", rx)
    box.start()
    box.put("a", "state", {"name": "a-state"})
    wait_for(lambda: not box.link.reachable, "the link to go down")
    assert box.link.alerts.open()[0].message.startswith("Prefect unreachable since")
    assert [r.kind for r in box.pending()] == ["state"]
    rx.down = False
    wait_for(lambda: not box.pending(), "the record delivered")
    assert box.link.reachable and box.link.alerts.open() == []
    assert box.lag_stats()["count"] == 1
    box.close()


def test_records_survive_the_process_and_a_new_owner_takes_over_the_dead_ones(tmp_path):
    path = tmp_path / "o.sqlite"
    code = (
        "import sys; sys.path[:0] = sys.argv[2:];"
        "from test_outbox import Receiver, outbox;"
        "rx = Receiver(); rx.down = True;"
        "box = outbox(sys.argv[1], rx, owner='dead');"
        "box.put('a', 'state', {'name': 'kept'}); import os; os._exit(9)"
    )
    here = str(__import__("pathlib").Path(__file__).parent)
    subprocess.run([sys.executable, "-c", code, str(path), here, *sys.path], check=False)
    rx = Receiver()
    box = outbox(path, rx, owner="w2")
    assert box.pending() == []  # not its own yet
    assert box.adopt() == 1
    assert box.flush(5)
    assert rx.got == [("state", {"name": "kept"})]
    box.close()


def test_a_live_workers_records_are_not_taken_over(tmp_path):
    path = tmp_path / "o.sqlite"
    rx = Receiver()
    rx.down = True
    alive = outbox(path, rx, owner="alive")  # this very process: alive
    alive.put("a", "state", {"name": "mine"})
    other = outbox(path, Receiver(), owner="other")
    assert other.adopt() == 0
    alive.close()
    other.close()


def test_a_record_prefect_refuses_is_set_aside_with_the_reason(tmp_path):
    rx = Receiver()
    rx.refuse = {"gone"}
    box = outbox(tmp_path / "o.sqlite", rx)
    box.put("a", "state", {"name": "gone"})
    box.put("b", "state", {"name": "fine"})
    box.start()
    wait_for(lambda: box.pending(undeliverable=True), "the refused record set aside", 60)
    (aside,) = box.pending(undeliverable=True)
    assert aside.refusals == MAX_REFUSALS and "no run gone" in (aside.error or "")
    assert ("state", {"name": "fine"}) in rx.got
    assert box.link.reachable  # a refusal is not an outage
    box.close()


def test_closing_delivers_what_waits_even_if_not_due(tmp_path):
    rx = Receiver()
    box = outbox(tmp_path / "o.sqlite", rx)
    box.start()
    box.put("a", "labels", {"name": "later"}, delay=3600)
    box.close()
    assert rx.got == [("labels", {"name": "later"})]


def test_an_unknown_kind_is_refused_at_once(tmp_path):
    box = outbox(tmp_path / "o.sqlite", Receiver())
    with pytest.raises(ValueError, match="no handler"):
        box.put("a", "nonsense", {})
    box.close()


def test_an_outcome_held_for_its_start_is_due_at_once_for_the_worker_that_adopts_it(tmp_path):
    """A worker killed while it waited for a run's Running state: the record it put with a
    delay is delivered by the next worker at start-up, not after the delay."""
    path = tmp_path / "o.sqlite"
    code = (
        "import sys; sys.path[:0] = sys.argv[2:];"
        "from test_outbox import Receiver, outbox;"
        "box = outbox(sys.argv[1], Receiver(), owner='dead');"
        "box.put('a', 'state', {'name': 'held'}, delay=3600); import os; os._exit(9)"
    )
    here = str(__import__("pathlib").Path(__file__).parent)
    subprocess.run([sys.executable, "-c", code, str(path), here, *sys.path], check=False)
    rx = Receiver()
    box = outbox(path, rx, owner="w2")
    assert box.adopt() == 1
    assert box.flush(5)  # delivers only what is due: the adopted record is
    assert rx.got == [("state", {"name": "held"})]
    box.close()
