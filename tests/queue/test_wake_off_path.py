"""A submission never waits on a worker's control channel: the wake-up goes out from the
queue's own thread, so a worker that does not answer (killed a moment ago, its announcement
not yet removed) costs a submission nothing. Deterministic: the silent worker answers only
once the submission has returned, and the answer must still reach the queue."""

from __future__ import annotations

import json
import os
import socket
import threading

import zmq

from remotelab.keys.curve import CONTROL, CurveKeys, Gatekeeper
from remotelab.queue import ExperimentQueue
from remotelab.queue.announcement import WorkerAnnouncement
from remotelab.queue.commands import Reply, parse_command
from remotelab.queue.fake import FakePrefectLab

MEASURE = {"detectors": ["thermometer"], "num": 1}


def test_a_worker_that_does_not_answer_never_makes_a_submission_wait(lab):
    prefect = FakePrefectLab(lab.name)
    exq = ExperimentQueue(lab, prefect=prefect)
    keys, ctx = CurveKeys(), zmq.Context()
    gate, me = Gatekeeper(ctx, keys), keys.keypair("worker")
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    me.serve(rep, CONTROL)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    submitted, stop, woken = threading.Event(), threading.Event(), []

    def silent_worker() -> None:
        while not stop.is_set():
            if rep.poll(100):
                woken.append(parse_command(json.loads(rep.recv())).cmd)
                break
        while not (submitted.is_set() or stop.is_set()):
            submitted.wait(0.1)  # answers only once the submission has returned
        if woken:
            rep.send(Reply.done().model_dump_json().encode())

    thread = threading.Thread(target=silent_worker, daemon=True)
    thread.start()
    prefect.announce(
        WorkerAnnouncement(
            id="silent",
            lab=lab.name,
            pid=os.getpid(),
            host=socket.gethostname(),
            control=f"tcp://127.0.0.1:{port}",
            control_key=me.public.decode(),
        ),
        create=True,
    )
    try:
        exq._waker.timeout = 120  # the waker waits for it as long as it takes; nobody else
        exq.submit("measure", MEASURE, submitter="ada")
        submitted.set()
        assert exq._waker.wait_idle(120)
        assert woken == ["wake"] and exq._waker.answered == 1
    finally:
        stop.set()
        thread.join(10)
        rep.close()
        gate.stop()
        ctx.term()
        exq.close()
