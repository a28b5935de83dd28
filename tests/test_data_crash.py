"""A worker killed with SIGKILL mid-run loses no document it emitted before the kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from remotelab.data import RunStore

SRC = Path(__file__).resolve().parents[1] / "src"

CHILD = textwrap.dedent(
    """
    import sys
    from bluesky import RunEngine
    from bluesky.plans import count
    from remotelab.data import RunStore
    from remotelab.lab import load_lab

    lab = load_lab(speed=2000)
    store = RunStore(sys.argv[1], plots=False)
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(store)

    def emitted(name, doc):  # subscribed after the store: runs once the store has returned
        print(name, doc.get("uid", ""), flush=True)

    RE.subscribe(emitted)
    RE(count([lab["spectrometer"], lab["thermometer"]], num=100000),
       experiment_id="E-crash", sample_ids=["S001"], submitter="ada")
    """
)


def test_sigkill_mid_run_keeps_every_emitted_document(tmp_path):
    db = tmp_path / "runs.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    reported: list[tuple[str, str]] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            name, _, uid = line.strip().partition(" ")
            reported.append((name, uid))
            if sum(n == "event" for n, _ in reported) >= 25:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # anything printed between our last read and the kill was emitted too
        reported += [tuple(line.strip().partition(" ")[::2]) for line in proc.stdout]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert sum(n == "event" for n, _ in reported) >= 25

    store = RunStore(db, plots=False)
    (run,) = store.runs(experiment_id="E-crash")
    assert not run.complete and run.status == "incomplete"
    assert run.sample_ids == ("S001",) and run.submitter == "ada"
    stored = [(n, d.get("uid", "")) for n, d in store.documents(run.uid)]
    assert stored[: len(reported)] == reported  # every emitted document, in order
    assert len(stored) - len(reported) <= 1  # at most the one being reported at the kill
    table = store.table(run.uid)
    assert len(table) >= 25
    assert table.columns["spectrometer_absorbance"].shape[1:] == (201,)
    assert store.stop_doc(run.uid) is None
    verdict = store.verify(run.uid)
    assert not verdict.ok and "incomplete" in verdict.detail
    store.close()
