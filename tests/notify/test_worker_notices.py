"""What the worker and the queue tell people, on the simulated lab and the in-memory Prefect
adapter, with mail to a real SMTP server: a failed experiment (the lab's list and its
submitter, not another researcher), a submission waiting for approval (managers), a plan's
question, the lab held by an unsafe device, experiments a dead worker left running; and a
target that is down or hangs does not slow or break the worker."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from notify_helpers import closed_port, wait_until, write_lab
from prefect.states import Running

from remotelab.errors import NotificationError
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.queue.announcement import WorkerAnnouncement
from remotelab.queue.fake import FakePrefectLab
from remotelab.queue.messages import worker_tag
from remotelab.sim import Fault, inject_fault
from remotelab.worker import LabWorker

MEASURE = {"detectors": ["thermometer"], "num": 2}
LIST = "lab-list@example.org"


class Setup:
    def __init__(self, lab, fake: FakePrefectLab):
        self.lab, self.fake = lab, fake
        self.q = ExperimentQueue(lab, prefect=fake, notify=False)
        self.worker = LabWorker(lab, prefect=fake, worker_id="w1", poll_interval=60.0)

    def subscribe(self, mailbox, user: str, role: str = "researcher", events=None) -> str:
        url = mailbox.url(f"{user}@example.org")
        return self.q.subscriptions.add(url, events, user=user, role=role).id


@pytest.fixture
def setup(tmp_path, mailbox) -> Iterator[Setup]:
    path = write_lab(
        tmp_path,
        [{"url": mailbox.url(LIST), "events": ["experiment_failed", "lab_held"]}],
    )
    lab = load_lab(path, speed=1000)
    s = Setup(lab, FakePrefectLab(lab.name))
    yield s
    s.worker.close()
    s.q.close()
    lab.close()


def test_a_failed_experiment_mails_the_lab_and_its_submitter_but_not_another(setup, mailbox):
    setup.subscribe(mailbox, "alice")
    setup.subscribe(mailbox, "bob")
    setup.subscribe(mailbox, "mia", role="manager")
    setup.worker.start()
    exp = setup.q.submit("measure", MEASURE, submitter="alice", role="researcher")
    inject_fault(setup.lab["thermometer"], Fault.FAIL)
    done = setup.worker.run_next()
    assert done is not None and done.id == exp.id and done.state == ExperimentState.failed
    subject = f"experiment {exp.id[:8]} failed"
    to_list = mailbox.wait_for(LIST, subject)
    to_alice = mailbox.wait_for("alice@example.org", subject)
    for mail in (to_list, to_alice):
        text = mail.get_body(("plain",)).get_content()
        assert "ended failed" in text and "thermometer" in text and exp.id in text
        assert "submitter: alice" in text
    assert setup.worker.notifier.flush(30)
    assert mailbox.to("bob@example.org") == [] and mailbox.to("mia@example.org") == []


def test_waiting_for_approval_reaches_the_managers_subscription(setup, mailbox):
    setup.subscribe(mailbox, "mia", role="manager")
    setup.subscribe(mailbox, "bob")
    scan = {"motor": "heater", "start": 25, "stop": 30, "num": 2, "detectors": ["thermometer"]}
    exp = setup.q.submit("scan", scan, submitter="alice", role="researcher")
    assert exp.state == ExperimentState.waiting_for_approval
    mail = mailbox.wait_for("mia@example.org", f"experiment {exp.id[:8]} waits for approval")
    assert f"remotelab approve {exp.id}" in mail.get_body(("plain",)).get_content()
    assert setup.q.notifier.flush(30)
    assert mailbox.to("bob@example.org") == [] and mailbox.to(LIST) == []


def test_a_question_to_the_operator_is_notified_with_how_to_answer(setup, mailbox):
    setup.subscribe(mailbox, "alice", events=["operator_question"])
    setup.worker.start()
    exp = setup.q.submit("ask", {"prompt": "load tray 2"}, submitter="alice", role="researcher")
    ran: list = []
    runner = threading.Thread(target=lambda: ran.append(setup.worker.run_next()), daemon=True)
    runner.start()
    mail = mailbox.wait_for("alice@example.org", f"experiment {exp.id[:8]} asks the operator")
    text = mail.get_body(("plain",)).get_content()
    assert "load tray 2" in text and f"remotelab answer {exp.id}" in text
    wait_until(lambda: setup.worker.question is not None, what="the question")
    assert setup.worker.questions.answer(True).ok
    runner.join(60)
    assert ran and ran[0].state == ExperimentState.completed


def test_a_device_that_fails_its_safe_state_holds_the_lab_and_says_so(setup, mailbox):
    setup.subscribe(mailbox, "mia", role="manager", events=["lab_held"])
    setup.subscribe(mailbox, "alice", events=["lab_held"])
    setup.worker.start()
    scan = {"motor": "heater", "start": 25, "stop": 30, "num": 2, "detectors": ["thermometer"]}
    setup.q.submit("scan", scan, submitter="alice", role="manager")
    inject_fault(setup.lab["heater"], Fault.FAIL)  # the scan's first move fails
    inject_fault(setup.lab["heater"], Fault.FAIL)  # and so does its safe state
    done = setup.worker.run_next()
    assert done is not None and "NOT safe" in done.message and setup.fake.held
    for address in (LIST, "mia@example.org"):
        mail = mailbox.wait_for(address, "the lab is held")
        assert "failed their safe state" in mail.get_body(("plain",)).get_content()
    assert setup.worker.notifier.flush(30)
    assert mailbox.to("alice@example.org") == []  # lab-wide: managers only


def test_experiments_a_dead_worker_left_running_are_notified_crashed(setup, mailbox):
    setup.subscribe(mailbox, "alice", events=["experiment_crashed"])
    exp = setup.q.submit("measure", MEASURE, submitter="alice", role="researcher")
    setup.fake.set_state(exp.id, Running(message=f"{worker_tag('w0')} running"), force=True)
    setup.fake.announce(WorkerAnnouncement(id="w0", lab=setup.lab.name, pid=0), create=True)
    crashed = setup.worker.start()
    assert [e.id for e in crashed] == [exp.id]
    mail = mailbox.wait_for("alice@example.org", f"experiment {exp.id[:8]} crashed")
    assert "was lost" in mail.get_body(("plain",)).get_content()
    assert setup.worker.notifier.flush(30)
    assert len(mailbox.to("alice@example.org")) == 1  # told once, not by every path


def test_a_target_down_or_hung_neither_slows_nor_breaks_the_worker(setup, mailbox, silent):
    """Alice's subscriptions: a port nothing listens on, a server that never answers, and
    mail. Her failed experiment is told by mail while the hung target still hangs, and the
    worker runs the next experiment meanwhile."""
    url = f"json://127.0.0.1:{closed_port()}/down"
    setup.q.subscriptions.add(url, user="alice", role="researcher")
    setup.q.subscriptions.add(silent.url(), user="alice", role="researcher")
    setup.subscribe(mailbox, "alice")
    setup.worker.notifier.timeout = 120
    setup.worker.start()
    failing = setup.q.submit("measure", MEASURE, submitter="alice", role="researcher")
    inject_fault(setup.lab["thermometer"], Fault.FAIL)
    assert setup.worker.run_next().state == ExperimentState.failed
    mailbox.wait_for("alice@example.org", f"experiment {failing.id[:8]} failed")
    assert silent.accepted.wait(30)
    nxt = setup.q.submit("measure", MEASURE, submitter="alice", role="researcher")
    done = setup.worker.run_next()
    assert done.id == nxt.id and done.state == ExperimentState.completed
    assert not setup.worker.notifier.flush(0)  # the hung delivery is still waiting, alone
    wait_until(lambda: any(not d.ok and "down" in d.url for d in setup.worker.notifier.sent))
    silent.close()


def test_the_worker_s_alerts_are_notified_once_each(setup, mailbox):
    """Every alert the worker raises (a watchdog's, Prefect unreachable, the disk) is a
    watchdog alert to the lab's managers, sent when first raised, not on each update."""
    setup.subscribe(mailbox, "mia", role="manager", events=["watchdog_alert"])
    setup.subscribe(mailbox, "bob", events=["watchdog_alert"])
    alerts = setup.worker.alerts
    alerts.raise_("stall:queue", "queue stalled", "3 experiment(s) queued and none started")
    alerts.raise_("stall:queue", "queue stalled", "4 experiment(s) queued and none started")
    mail = mailbox.wait_for("mia@example.org", "watchdog alert")
    assert "3 experiment(s) queued" in mail.get_body(("plain",)).get_content()
    assert setup.worker.notifier.flush(30)
    assert len(mailbox.to("mia@example.org")) == 1 and mailbox.to("bob@example.org") == []


def test_a_user_subscribes_once_through_one_url(setup, mailbox):
    first = setup.subscribe(mailbox, "alice")
    with pytest.raises(NotificationError, match=f"already \\({first}\\)"):
        setup.subscribe(mailbox, "alice", events=["lab_held"])
    setup.q.subscriptions.add(mailbox.url("alice@example.org"), user="bob", role="researcher")
    assert len(setup.q.subscriptions.stored()) == 2
