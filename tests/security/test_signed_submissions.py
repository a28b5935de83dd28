"""Only what the gateway (or the lab's own queue) accepted runs: a worker refuses a run made
straight in Prefect — even with Prefect's auth string — and one whose plan, parameters,
role, priority or approval were changed there, or whose signature was copied from another;
each refusal is audited by the gateway. What the queue itself does (submit, edit, move,
approve) stays signed and runs."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect.states import Scheduled

from remotelab.api import AuthStore, LabService, create_app
from remotelab.api.watchers import REFUSED_ACTION, RefusalAudit
from remotelab.keys.signing import load_verifier
from remotelab.lab import load_lab, shipped_lab_text
from remotelab.queue import ExperimentQueue, ExperimentState, signatures
from remotelab.worker import LabWorker

MEASURE = {"detectors": ["thermometer"], "num": 1}
SCAN = {"detectors": ["thermometer"], "motor": "stirrer", "start": 0, "stop": 100, "num": 2}


def write_lab(directory: Path) -> Path:
    """The shipped simulated lab under a fresh name; a researcher's scan needs approval."""
    data = yaml.safe_load(shipped_lab_text("sim"))
    data["name"] = f"t{uuid.uuid4().hex[:8]}"
    data["plans"] = {
        "roles": {"researcher": ["measure", "scan"]},
        "approval": {"plans": ["scan"]},
    }
    path = directory / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def lab(tmp_path):
    lab = load_lab(write_lab(tmp_path), speed=1000)
    yield lab
    lab.close()


@pytest.fixture
def queue(lab, prefect_api) -> Iterator[ExperimentQueue]:
    with ExperimentQueue(lab, api_url=prefect_api) as q:
        q.ensure()
        q.hold()  # nothing starts until every case is in the queue
        yield q


@pytest.fixture
def serve(lab, prefect_api, queue):
    """Start a worker on a thread: the documents its RunEngines emitted."""
    started: list[tuple[LabWorker, threading.Thread]] = []
    documents: list[tuple[str, dict]] = []

    def start() -> list[tuple[str, dict]]:
        worker = LabWorker(
            lab,
            api_url=prefect_api,
            poll_interval=0.3,
            subscribers=[lambda n, d: documents.append((n, d))],
        )
        worker.start()
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        started.append((worker, thread))
        return documents

    yield start
    for worker, thread in started:
        worker.shutdown("test teardown")
        thread.join(30)
        worker.close()


def wait_until_finished(queue: ExperimentQueue, ids: list[str], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        now = {i: queue.get(i) for i in ids}
        if all(e.state.finished for e in now.values()):
            return now
        assert time.monotonic() < deadline, {i: e.state for i, e in now.items()}
        time.sleep(0.2)


def test_runs_made_or_changed_around_the_gateway_are_refused(queue, serve, lab):
    prefect = queue.prefect
    tags = [f"lab:{lab.name}", "priority:normal"]
    forged = {"plan": "measure", "params": MEASURE, "submitter": "demo-manager", "role": "manager"}
    # 1. a run made straight in Prefect, with Prefect's credentials, as a manager
    unsigned = prefect.create_run(forged, Scheduled(), tags=tags, work_queue="normal")
    # 2. a signed run whose role (and submitter) were changed in Prefect afterwards
    altered = queue.submit("measure", MEASURE, submitter="alice", role="researcher")
    params = prefect.read_run(altered.id).parameters
    prefect.update_run(altered.id, parameters={**params, "submitter": "mia", "role": "manager"})
    # 3. a signed submission copied onto a new run
    original = queue.submit("measure", MEASURE, submitter="bob", role="researcher")
    copy = prefect.create_run(
        dict(prefect.read_run(original.id).parameters),
        Scheduled(),
        tags=tags,
        work_queue="normal",
        idempotency_key=uuid.uuid4().hex,
    )
    # 4. a scan waiting for a manager's approval, let into the queue straight in Prefect
    unapproved = queue.submit("scan", SCAN, submitter="alice", role="researcher")
    assert unapproved.state == ExperimentState.waiting_for_approval
    prefect.set_state(unapproved.id, Scheduled(message="approved by demo-manager"))
    # 5. a signed run moved to the urgent priority in Prefect
    bumped = queue.submit("measure", MEASURE, submitter="alice", role="researcher")
    run = prefect.read_run(bumped.id)
    prefect.update_run(
        bumped.id, tags=[t for t in run.tags if not t.startswith("priority:")] + ["priority:urgent"]
    )
    # what the queue did itself: a submission, an approved scan, an edited and moved one
    plain = queue.submit("measure", MEASURE, submitter="alice", role="researcher")
    approved = queue.submit("scan", SCAN, submitter="alice", role="researcher")
    queue.approve(approved.id, by="mia")
    edited = queue.submit("measure", MEASURE, submitter="bob", role="researcher")
    queue.edit(edited.id, {"num": 2}, by="bob", role="researcher")
    queue.prioritise(edited.id, "low")

    documents = serve()
    queue.release()
    refused_ids = [str(unsigned.id), altered.id, str(copy.id), unapproved.id, bumped.id]
    fine_ids = [original.id, plain.id, approved.id, edited.id]
    ended = wait_until_finished(queue, refused_ids + fine_ids)

    reasons = {
        str(unsigned.id): "carries no signature of the gateway",
        altered.id: "was changed after the gateway accepted it",
        str(copy.id): "copied onto this run",
        unapproved.id: "needs a manager's approval",
        bumped.id: "priority was changed outside the gateway (signed normal, now urgent)",
    }
    for exp_id, reason in reasons.items():
        exp = ended[exp_id]
        assert exp.state == ExperimentState.cancelled and exp.state_name == signatures.REFUSED
        assert "refused to run it: " in exp.message and reason in exp.message, exp.message
    for exp_id in fine_ids:
        assert ended[exp_id].state == ExperimentState.completed, ended[exp_id].message
    started = {d.get("experiment_id") for n, d in documents if n == "start"}
    assert started == set(fine_ids)  # nothing refused ever reached a RunEngine
    (start,) = [d for n, d in documents if n == "start" and d["experiment_id"] == edited.id]
    assert start["role"] == "researcher" and start["edits"][0]["by"] == "bob"
    assert start["num_points"] == 2 and start["priority"] == "low"


def test_a_refusal_is_written_to_the_gateway_audit_log_once(queue, serve, lab, tmp_path):
    tags = [f"lab:{lab.name}", "priority:normal"]
    forged = {"plan": "measure", "params": MEASURE, "submitter": "demo-manager", "role": "manager"}
    run = queue.prefect.create_run(forged, Scheduled(), tags=tags, work_queue="normal")
    serve()
    queue.release()
    (exp,) = wait_until_finished(queue, [str(run.id)]).values()
    assert exp.state_name == signatures.REFUSED
    auth = AuthStore(tmp_path / "auth.sqlite")
    try:
        audit = RefusalAudit(LabService(lab, queue), auth)
        assert audit.check() == 1
        assert RefusalAudit(LabService(lab, queue), auth).check() == 0  # once, even afresh
        (row,) = auth.audit(action=REFUSED_ACTION, target=str(run.id))
        assert row.status == 403 and row.lab == lab.name and row.actor.startswith("worker ")
        assert row.detail["claimed_role"] == "manager"
        assert row.detail["claimed_submitter"] == "demo-manager"
        assert "carries no signature" in row.detail["reason"]
        assert auth.verify_audit().ok
    finally:
        auth.close()


def test_the_gateway_audits_refusals_while_it_serves(queue, serve, lab, tmp_path):
    from fastapi.testclient import TestClient

    tags = [f"lab:{lab.name}", "priority:normal"]
    forged = {"plan": "measure", "params": MEASURE, "submitter": "eve", "role": "manager"}
    run = queue.prefect.create_run(forged, Scheduled(), tags=tags, work_queue="normal")
    serve()
    queue.release()
    wait_until_finished(queue, [str(run.id)])
    auth = AuthStore(tmp_path / "auth.sqlite")
    app = create_app(auth=auth, labs=[LabService(lab, queue)], lost_after=1.0)
    try:
        with TestClient(app):
            deadline = time.monotonic() + 60
            while not auth.audit(action=REFUSED_ACTION, target=str(run.id)):
                assert time.monotonic() < deadline, "the gateway never audited the refusal"
                time.sleep(0.1)
    finally:
        auth.close()


def test_the_worker_trusts_the_keys_directory_and_names_a_key_it_lacks(queue, tmp_path):
    stranger = load_verifier(tmp_path / "elsewhere")  # a fresh host: a key pair of its own
    exp = queue.submit("measure", MEASURE, submitter="alice", role="researcher")
    run = queue.prefect.read_run(exp.id)
    why = signatures.refusal(run, queue.name, stranger)
    assert why is not None and "does not trust" in why and "submission.pub" in why
    assert signatures.refusal(run, queue.name, load_verifier()) is None
    assert signatures.refusal(run, "another-lab", load_verifier()) is not None
