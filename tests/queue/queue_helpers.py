"""Helpers of the queue tests (imported by their conftest and the tests)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from remotelab.lab import shipped_lab_text
from remotelab.worker import LabWorker

HERE = Path(__file__).parent
SRC = HERE.parent.parent / "src"


def write_lab(tmp_path: Path, *, concurrency: int = 1, **plans_section) -> Path:
    """The shipped simulated lab under a fresh name, with the test plans added; one
    experiment at a time unless ``concurrency`` says otherwise."""
    data = yaml.safe_load(shipped_lab_text("sim"))
    data["name"] = f"t{uuid.uuid4().hex[:8]}"
    data["concurrency"] = concurrency
    data.setdefault("plans", {})
    data["plans"]["modules"] = ["queue_test_plans"]
    data["plans"].update(plans_section)
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class WorkerThread:
    """A LabWorker serving on a thread of the test process."""

    def __init__(self, lab, api_url: str, **kwargs):
        self.documents: list[tuple[str, dict]] = []
        self.worker = LabWorker(
            lab,
            api_url=api_url,
            poll_interval=0.5,
            subscribers=[lambda n, d: self.documents.append((n, d))],
            **kwargs,
        )
        self.crashed = self.worker.start()
        self.thread = threading.Thread(target=self.worker.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.worker.shutdown("test teardown")
        self.thread.join(30)
        self.worker.close()

    def docs(self, name: str, experiment_id: str | None = None) -> list[dict]:
        """Documents of one kind, optionally only those of one experiment's runs."""
        return docs_of(list(self.documents), name, experiment_id)


def docs_of(documents: list, name: str, experiment_id: str | None = None) -> list[dict]:
    runs = {
        d["uid"]
        for n, d in documents
        if n == "start" and (experiment_id is None or d.get("experiment_id") == experiment_id)
    }
    descriptors = {d["uid"] for n, d in documents if n == "descriptor" and d["run_start"] in runs}
    out = []
    for n, d in documents:
        if n != name:
            continue
        owner = {"start": d.get("uid"), "event": None}.get(n, d.get("run_start"))
        if n == "event":
            if d["descriptor"] in descriptors:
                out.append(d)
        elif owner in runs:
            out.append(d)
    return out


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, what: str = "") -> object:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def subprocess_env(api_url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]),
        "PREFECT_API_URL": api_url,
        "REMOTELAB_DATA_DIR": str(data_dir),
    }
