"""Lost workers on the in-memory Prefect adapter, on a clock the test moves: silence is
counted only while a watcher looks, one watcher wins, a worker that comes back reconciles.

The same on a real Prefect server with SIGKILLed worker processes: ``tests/reliability``.
"""

from __future__ import annotations

from prefect.states import Completed, Pending, Running, Scheduled

from remotelab.queue.announcement import WorkerAnnouncement, now_iso
from remotelab.queue.fake import FakePrefectLab
from remotelab.queue.lost import LostWorkers
from remotelab.queue.messages import (
    is_lost_message,
    lost_marker,
    lost_message,
    read_message,
    worker_tag,
)
from remotelab.queue.models import Experiment, ExperimentState
from remotelab.worker.presence import Presence

LOST_AFTER = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def announce(prefect: FakePrefectLab, worker_id: str, **fields) -> WorkerAnnouncement:
    info = WorkerAnnouncement(
        id=worker_id, lab=prefect.name, host="elsewhere", heartbeat=now_iso(), **fields
    )
    prefect.announce(info, create=True)
    return info


def running_on(prefect: FakePrefectLab, worker_id: str) -> str:
    """A run claimed and started by ``worker_id``; its id."""
    params = {"plan": "measure", "params": {}, "submitter": "ada", "role": "researcher"}
    run = prefect.create_run(params, Scheduled(), tags=[], work_queue="normal")
    prefect.set_state(run.id, Pending(message=f"{worker_tag(worker_id)} claimed"))
    prefect.set_state(run.id, Running(message=f"{worker_tag(worker_id)} running"))
    return str(run.id)


def watcher(prefect, clock, by="the test", calls=None, **kwargs) -> LostWorkers:
    def on_lost(info: WorkerAnnouncement, crashed: list[Experiment]) -> None:
        if calls is not None:
            calls.append((by, info.id, [e.id for e in crashed]))

    return LostWorkers(
        prefect, by, lost_after=LOST_AFTER, interval=1.0, clock=clock, on_lost=on_lost, **kwargs
    )


def look(lost: LostWorkers, clock: Clock, seconds: float, step: float = 1.0) -> list:
    """Look every ``step`` s for ``seconds`` s; the records marked."""
    marked = []
    end = clock.now + seconds
    while clock.now < end:
        clock.now += step
        marked += lost.check()
    return marked


def test_lost_message_round_trip():
    message = lost_message("w-1", "the gateway on h (pid 3)", ["a1", "b2"], 61.2)
    assert is_lost_message(message)
    assert lost_marker(message) == "the gateway on h (pid 3)"
    recorded = read_message(message)
    assert recorded.worker == "w-1" and recorded.run_uids == ["a1", "b2"]
    assert recorded.exit_status is None
    assert not is_lost_message(f"{worker_tag('w-1')} crashed: its worker ended")
    assert lost_marker("anything else") is None


def test_a_silent_worker_is_lost_after_the_time_not_before():
    prefect, clock, calls = FakePrefectLab("lab"), Clock(), []
    info = announce(prefect, "w-1", running=[{"id": "x", "runs": ["uid-a"]}])
    run_id = running_on(prefect, "w-1")
    lost = watcher(prefect, clock, calls=calls, run_uids=lambda exp: ["uid-a", "uid-b"])
    assert look(lost, clock, LOST_AFTER - 2) == []
    # it beats again: silence counts from now
    prefect.announce(info.model_copy(update={"heartbeat": "later"}))
    assert look(lost, clock, LOST_AFTER - 2) == []
    assert prefect.announcement("w-1") is not None
    (record,) = look(lost, clock, 4)
    assert record.id == "w-1" and record.experiments == [run_id] and record.done
    exp = Experiment.from_flow_run(prefect.read_run(run_id))
    assert exp.state == ExperimentState.crashed and is_lost_message(exp.message)
    assert lost_marker(exp.message) == "the test" and exp.worker == "w-1"
    assert exp.run_uids == ["uid-a", "uid-b"]
    assert prefect.announcement("w-1") is None
    assert prefect.lost("w-1") == record
    assert calls == [("the test", "w-1", [run_id])]


def test_a_watcher_that_could_not_look_counts_again():
    prefect, clock = FakePrefectLab("lab"), Clock()
    announce(prefect, "w-1")
    lost = watcher(prefect, clock)
    assert look(lost, clock, 2) == []
    clock.now += 5 * LOST_AFTER  # e.g. Prefect was down: nobody could heartbeat, or look
    assert lost.check() == []
    assert look(lost, clock, LOST_AFTER - 2) == []
    assert [r.id for r in look(lost, clock, 3)] == ["w-1"]


def test_one_watcher_wins_and_the_other_marks_nothing():
    prefect, clock, calls = FakePrefectLab("lab"), Clock(), []
    announce(prefect, "w-1")
    run_id = running_on(prefect, "w-1")
    gateway = watcher(prefect, clock, "the gateway", calls)
    peer = watcher(prefect, clock, "worker w-2", calls, own_id="w-2")
    info = prefect.announcement("w-1")
    marked: dict[str, list] = {"gateway": [], "peer": []}
    for _ in range(int(LOST_AFTER) + 2):  # both look, every second, the gateway first
        clock.now += 1
        marked["gateway"] += gateway.check()
        marked["peer"] += peer.check()
    assert [r.id for r in marked["gateway"]] == ["w-1"] and marked["peer"] == []
    # a late marker holding the old announcement marks nothing either
    assert peer.mark(info, LOST_AFTER) is None
    states = [s.type.value for s in prefect.history(prefect.read_run(run_id).id)]
    assert states.count("CRASHED") == 1
    assert calls == [("the gateway", "w-1", [run_id])]


def test_an_experiment_that_ended_is_not_marked():
    prefect, clock = FakePrefectLab("lab"), Clock()
    announce(prefect, "w-1")
    run_id = running_on(prefect, "w-1")
    prefect.set_state(run_id, Completed(message=f"{worker_tag('w-1')} done"))
    lost = watcher(prefect, clock)
    (record,) = look(lost, clock, LOST_AFTER + 2)
    assert record.experiments == []
    assert Experiment.from_flow_run(prefect.read_run(run_id)).state == ExperimentState.completed


def test_a_worker_found_lost_that_comes_back_announces_again():
    prefect, clock = FakePrefectLab("lab"), Clock()
    presence = Presence(prefect, "w-1", lambda: {"host": "elsewhere"})
    presence.arrive()
    lost = watcher(prefect, clock)
    assert [r.id for r in look(lost, clock, LOST_AFTER + 2)] == ["w-1"]
    assert prefect.announcement("w-1") is None
    presence.beat()  # Prefect answers it again
    assert prefect.announcement("w-1") is not None
    assert prefect.lost("w-1") is None  # reconciled: the record is gone with its return
    assert look(lost, clock, 2) == []  # and it is watched afresh
