"""Each wire format, written and read back by the one module that owns it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from prefect.states import Pending, Scheduled

from remotelab.errors import WorkerUnavailable
from remotelab.keys.curve import CLIENT, CurveKeys
from remotelab.queue import commands, control
from remotelab.queue.announcement import (
    LostRecord,
    WorkerAnnouncement,
    lab_prefix,
    lost_prefix,
    pid_alive,
    variable_name,
)
from remotelab.queue.edit_hold import (
    edit_mark,
    held_for_edit,
    hold_state,
    move_mark,
    reapproval_after,
    stale_hold_successor,
)
from remotelab.queue.messages import (
    AWAITING_APPROVAL,
    outcome_tail,
    read_message,
    read_record,
    read_run_labels,
    run_labels,
    worker_in_message,
    worker_tag,
)

EVERY_COMMAND = [
    commands.Wake(),
    commands.Hold(),
    commands.Release(),
    commands.Status(),
    commands.Pause(experiment="e1", defer=False),
    commands.Resume(experiment="e1"),
    commands.Stop(),
    commands.Abort(reason="smoke"),
    commands.Cancel(experiment="e1", reason="cancelled by mia"),
    commands.Answer(experiment="e1", value={"volume": 2.5}),
]


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: c.cmd)
def test_every_command_round_trips_through_json(command):
    assert commands.parse_command(json.loads(command.model_dump_json())) == command


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        ({"cmd": "selfdestruct"}, "cmd"),
        ({"cmd": "pause", "defer": "later"}, "defer"),
        ({"cmd": "abort", "force": True}, "force"),
        ({"experiment": "e1"}, "cmd"),
        (["abort"], "request"),
    ],
)
def test_a_malformed_command_is_refused_saying_what_is_wrong(request_, says):
    with pytest.raises(commands.BadCommand, match=says):
        commands.parse_command(request_)
    reply = control.answer(json.dumps(request_).encode(), lambda c: commands.Reply.done())
    assert not reply.ok and says in (reply.error or "")


def test_the_control_channel_carries_typed_commands_and_refuses_garbage():
    seen = []

    def handler(command):
        seen.append(command)
        return commands.Reply(ok=True, info={"got": command.cmd})

    server = control.ControlServer(handler).start()
    try:
        reply = control.request(server.address, commands.Cancel(experiment="e1", reason="r"))
        assert reply.ok and reply.info == {"got": "cancel"}
        assert seen == [commands.Cancel(experiment="e1", reason="r")]
        import zmq

        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        CurveKeys().keypair(CLIENT).client(sock, server.keypair.public)
        sock.connect(server.endpoint)
        sock.send(b"{not json")
        garbage = commands.Reply.model_validate_json(sock.recv())
        sock.close(0)
        assert not garbage.ok and "not JSON" in garbage.error
        assert len(seen) == 1  # the handler never saw it
    finally:
        server.close()
    with pytest.raises(WorkerUnavailable):
        control.request(server.address, commands.Status(), timeout=0.2)


def test_worker_tag_round_trips_and_refuses_ids_it_could_not_read_back():
    message = f"{worker_tag('lab-pc-123-ab12cd')} running (pid 1 on lab-pc)"
    assert worker_in_message(message) == "lab-pc-123-ab12cd"
    assert worker_in_message("submitted by ada (researcher)") is None
    for bad in ("", "two words", "a]b"):
        with pytest.raises(ValueError):
            worker_tag(bad)


def test_the_outcome_tail_round_trips_and_labels_win_once_written():
    message = f"{worker_tag('w1')} completed: 2 run(s) in 0.10 s" + outcome_tail(
        ["u1", "u2"], "success"
    )
    read = read_message(message)
    assert (read.worker, read.run_uids, read.exit_status) == ("w1", ["u1", "u2"], "success")
    empty = read_message(f"{worker_tag('w1')} ValueError: bad" + outcome_tail([], None))
    assert empty.run_uids == [] and empty.exit_status is None
    assert read_message("[worker w1] running (pid 1 on pc)").run_uids == []
    both = read_record(run_labels("w2", ["u9"], "abort"), message)
    assert (both.worker, both.run_uids, both.exit_status) == ("w2", ["u9"], "abort")
    assert read_record({}, message) == read


def test_run_labels_round_trip():
    assert read_run_labels(run_labels("w1")).worker == "w1"
    read = read_run_labels(run_labels("w1", ["u1", "u2"], "abort"))
    assert (read.worker, read.run_uids, read.exit_status) == ("w1", ["u1", "u2"], "abort")
    none = read_run_labels(run_labels("w1", [], None))
    assert none.run_uids == [] and none.exit_status is None
    assert read_run_labels({"other": "x"}).worker is None


def test_an_announcement_round_trips_and_tells_a_live_worker_from_a_dead_one():
    now = datetime.now(UTC).isoformat()
    here = WorkerAnnouncement(
        id="w1",
        lab="sim",
        pid=os.getpid(),
        host=socket.gethostname(),
        control="tcp://127.0.0.1:5555",
        heartbeat=now,
        current="e1",
    )
    assert WorkerAnnouncement.parse(here.to_value()) == here
    assert here.variable == variable_name("sim", "w1") and here.variable.startswith(
        lab_prefix("sim")
    )
    assert here.is_alive()
    assert not here.model_copy(update={"stopped": True}).is_alive()
    old = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
    elsewhere = here.model_copy(update={"host": "instrument-pc", "heartbeat": old})
    assert not elsewhere.is_alive()
    assert elsewhere.model_copy(update={"heartbeat": now}).is_alive()
    assert WorkerAnnouncement.parse("not a dict") is None
    assert WorkerAnnouncement.parse({"id": "w1"}) is None  # no lab


def test_a_lost_record_round_trips_apart_from_the_announcements():
    record = LostRecord(id="w1", lab="sim", by="the gateway on h (pid 1)", experiments=["e1"])
    assert LostRecord.parse(record.to_value()) == record
    assert record.variable.startswith(lost_prefix("sim"))
    assert not record.variable.startswith(lab_prefix("sim"))  # never read as an announcement
    assert LostRecord.parse({"id": "w1"}) is None


def test_a_killed_process_not_yet_reaped_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        # a zombie until waited for: os.kill(pid, 0) still succeeds, the worker is gone
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while pid_alive(child.pid) and datetime.now(UTC) < deadline:
            time.sleep(0.01)
        assert not pid_alive(child.pid)
    finally:
        child.wait(10)


def test_an_edit_hold_is_recognised_and_says_whether_it_needs_approval_again():
    mark = edit_mark("ada", reapprove_after=2)
    hold = hold_state(mark, datetime.now(UTC))
    assert held_for_edit(hold) and reapproval_after(hold.message) == 2
    assert held_for_edit(hold_state(move_mark(), None))
    assert reapproval_after(edit_mark("ada")) is None
    assert not held_for_edit(Pending(message="[worker w1] claimed"))
    assert not held_for_edit(Scheduled(message=mark))
    assert edit_mark("ada") != edit_mark("ada")  # each edit's mark is its own


def test_a_stale_hold_goes_back_where_it_was_or_to_approval():
    at = datetime.now(UTC)
    before = Scheduled(scheduled_time=at, message="submitted by ada (researcher)")
    hold = hold_state(edit_mark("ada", reapprove_after=1), at)
    back, force = stale_hold_successor(hold, before, edits=1)
    assert back.type.value == "SCHEDULED" and not force
    assert back.state_details.scheduled_time == at and back.message == before.message
    again, force = stale_hold_successor(hold, before, edits=2)  # the edit did change it
    assert again.name == AWAITING_APPROVAL and force
    plain, _ = stale_hold_successor(hold_state(edit_mark("ada"), at), None, edits=5)
    assert plain.type.value == "SCHEDULED" and plain.state_details.scheduled_time == at


def test_a_notification_subscription_round_trips_in_its_own_variable():
    from remotelab.notify import EventKind, Subscription
    from remotelab.queue import subscriptions

    sub = Subscription(
        lab="Lab-1", url="json://h/x", events=[EventKind.lab_held], owner="mia", role="manager"
    )
    name = subscriptions.variable_name(sub.lab, sub.id)
    assert name.startswith(subscriptions.lab_prefix("Lab-1")) and name == name.lower()
    assert not name.startswith(lab_prefix("Lab-1"))  # never taken for a worker's announcement
    back = subscriptions.parse(json.loads(json.dumps(sub.model_dump(mode="json"))))
    assert back == sub
    assert subscriptions.parse({"id": "x"}) is None and subscriptions.parse("x") is None
