"""Helpers of the reliability tests: a Prefect server that can be killed and started again,
and worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from queue_helpers import subprocess_env, wait_until

from remotelab.queue import control
from remotelab.queue.commands import Status
from remotelab.queue.server import PrefectServer


class Outage:
    """A private Prefect server on loopback (its own database and port) to kill and restart."""

    def __init__(self, home: Path):
        self.server = PrefectServer(home)

    @property
    def api_url(self) -> str:
        return self.server.api_url

    def start(self) -> None:
        self.server.start()

    def kill(self) -> None:
        """SIGKILL the server and everything it started (no clean shutdown)."""
        proc = self.server.proc
        assert proc is not None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        self.server.proc = None

    def stop(self) -> None:
        self.server.stop()


def read_docs(path: Path) -> list[tuple[str, dict]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(tuple(json.loads(line)))
        except json.JSONDecodeError:
            continue  # a line cut by a kill
    return out


def start_proxy(in_port: int, out_port: int, log: Path) -> subprocess.Popen:
    """``remotelab stream-proxy`` on loopback."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "remotelab",
                "stream-proxy",
                "--in",
                f"tcp://127.0.0.1:{in_port}",
                "--out",
                f"tcp://127.0.0.1:{out_port}",
            ],
            env=subprocess_env("", log.parent),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_worker(
    lab_file: Path,
    api_url: str,
    data_dir: Path,
    docs: Path,
    log: Path,
    stream: str = "none",
):
    """``remotelab worker`` on the lab, with its outages shortened (see the conftest)."""
    env = {
        **subprocess_env(api_url, data_dir),
        "QUEUE_TEST_DOCS": str(docs),
        "PREFECT_CLIENT_MAX_RETRIES": "0",
        "REMOTELAB_RETRY_CAP": "1",
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "remotelab",
                "worker",
                "--lab",
                str(lab_file),
                "--speed",
                "1000",
                "--poll",
                "0.5",
                "--subscriber",
                "queue_test_plans:jsonl_documents",
                "--stream",
                stream,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def announced(queue: Any, proc: subprocess.Popen) -> dict:
    """The worker process's announcement, once it has made one."""
    found = wait_until(
        lambda: (
            next((w for w in queue.workers(fresh=True) if w["pid"] == proc.pid), None)
            or proc.poll() is not None
        ),
        timeout=90,
        what="the worker to announce itself",
    )
    assert proc.poll() is None, "the worker exited"
    assert isinstance(found, dict)
    return found


def status(address: control.ControlAddress) -> dict:
    """The worker's status, over its control channel (which needs no Prefect)."""
    return control.request(address, Status(), timeout=10).info or {}


def summaries(queue: Any, experiment_id: str) -> list[str]:
    """The summary artifacts Prefect has of an experiment."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    found = queue.client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[experiment_id]))
    )
    return [a.data for a in found]


def labels(queue: Any, experiment_id: str) -> dict:
    return dict(queue.client.read_flow_run(experiment_id).labels or {})


def alert_messages(endpoint: control.ControlAddress) -> list[str]:
    return [a["message"] for a in status(endpoint).get("alerts", [])]
