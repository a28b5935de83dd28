"""Helpers of the gateway tests: a lab file, a site with users of every role."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from bluesky import RunEngine
from fastapi.testclient import TestClient

from remotelab.api import AuthStore, LabService, create_app
from remotelab.data import RunStore
from remotelab.lab import load_lab, shipped_lab_text
from remotelab.plans.registry import registry_for
from remotelab.queue import ExperimentQueue

SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_lab(directory: Path, visibility: str | None = None) -> Path:
    """The shipped simulated lab under a fresh name: researchers may run measure and scan;
    a researcher's scan waits for a manager's approval (``visibility``: the file says so)."""
    data = yaml.safe_load(shipped_lab_text("sim"))
    data["name"] = f"t{uuid.uuid4().hex[:8]}"
    if visibility is not None:
        data["visibility"] = visibility
    data["plans"] = {
        "roles": {"researcher": ["measure", "scan"]},
        "approval": {"plans": ["scan"]},
    }
    path = directory / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class Site:
    """Everything a gateway test needs."""

    app: object
    client: TestClient
    lab: object
    queue: ExperimentQueue
    store: RunStore
    auth: AuthStore
    tokens: dict[str, str]
    run_uid: str

    @property
    def name(self) -> str:
        return self.lab.name

    def headers(self, who: str) -> dict[str, str]:
        token = self.tokens.get(who)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def submit(self, who: str, plan: str = "measure", **params) -> str:
        """Queue an experiment as ``who`` (straight through the queue); its id."""
        params = params or {"detectors": ["thermometer"], "num": 1}
        role = "manager" if who in ("manager", "admin") else "researcher"
        user = {"researcher": "alice", "researcher2": "bob"}.get(who, who)
        return self.queue.submit(plan, params, submitter=user, role=role).id


def store_one_run(store: RunStore, lab, experiment_id: str, submitter: str = "alice") -> str:
    """Run the plan ``measure`` on the simulated lab into ``store`` (as ``submitter``'s); the
    run's uid."""
    registry = registry_for(lab)
    validated = registry.validate(
        "measure", {"detectors": ["thermometer", "spectrometer"], "num": 3}, lab=lab
    )
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(store)
    (uid,) = RE(
        registry.build(validated, lab, md={"experiment_id": experiment_id, "submitter": submitter})
    )
    return uid


def make_site(tmp: Path, api_url: str, visibility: str | None = None) -> Iterator[Site]:
    lab = load_lab(write_lab(tmp, visibility), speed=1000)
    queue = ExperimentQueue(lab, api_url=api_url)
    queue.ensure()
    store = RunStore(tmp / "runs.sqlite", plots=False)
    auth = AuthStore(tmp / "auth.sqlite")
    tokens = {}
    users = {
        "observer": "olga",
        "researcher": "alice",
        "researcher2": "bob",
        "manager": "mia",
        "admin": "root",
    }
    for key, user in users.items():
        auth.add_user(user, "researcher" if key == "researcher2" else key)
        tokens[key] = auth.create_token(user, "tests").token
    revoked = auth.create_token("root", "revoked")
    auth.revoke_token(revoked.id)
    tokens["revoked"] = revoked.token
    tokens["wrong"] = "rl_0123456789ab_" + "x" * 43
    tokens["none"] = ""
    run_uid = store_one_run(store, lab, experiment_id=str(uuid.uuid4()))
    # the role matrix sends many bad tokens from one address: not slowed here (test_api_guard)
    app = create_app(auth=auth, labs=[LabService(lab, queue)], store=store, auth_failures=10**6)
    with TestClient(app) as client:
        yield Site(app, client, lab, queue, store, auth, tokens, run_uid)
    queue.close()
    store.close()
    auth.close()
    lab.close()
