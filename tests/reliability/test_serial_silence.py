"""A serial instrument that stops answering mid-plan, on the serial simulated lab (real
serial lines to instrument simulators) served by a worker: the experiment fails naming the
instrument and what it did not answer, the lab is left safe, and the queue goes on."""

from __future__ import annotations

import threading

import pytest
from queue_helpers import wait_until

from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.queue.fake import FakePrefectLab
from remotelab.sim.server import WireFault
from remotelab.worker import LabWorker

pytestmark = pytest.mark.slow


def test_a_probe_that_stops_answering_fails_its_experiment_and_the_lab_goes_on():
    with load_lab("serial-sim", speed=2000) as lab:
        servers = {s.instrument.name: s for s in lab.simulators}
        fake = FakePrefectLab(lab.name)
        q = ExperimentQueue(lab, prefect=fake, notify=False)
        worker = LabWorker(lab, prefect=fake, worker_id="w1", poll_interval=0.05)
        documents: list[tuple[str, dict]] = []
        for lane in worker.lanes:
            lane.RE.subscribe(lambda name, doc: documents.append((name, doc)))
        worker.start()
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        try:
            victim = q.submit(
                "temperature_ramp",
                {"setpoints": [30, 35, 40, 45, 50, 55, 60], "readings": 20},
                submitter="ada",
            )
            wait_until(lambda: any(n == "event" for n, _ in documents), timeout=60, what="readings")
            servers["thermometer"].inject(WireFault.NO_REPLY, match="MEAS", times=None)
            failed = q.wait_for(victim.id, timeout=120)
            assert failed.state == ExperimentState.failed, failed.message
            assert "DeviceTimeout: thermometer: measure did not finish" in failed.message
            stops = [d for n, d in documents if n == "stop"]
            assert stops and stops[-1]["exit_status"] == "fail"  # its documents end properly
            world = lab.world
            assert world.zone("heater").setpoint == 25.0  # the heater back to its safe state
            servers["thermometer"].clear_faults()  # the probe answers again
            nxt = q.submit("measure", {"detectors": ["thermometer"], "num": 2}, submitter="ada")
            assert q.wait_for(nxt.id, timeout=120).state == ExperimentState.completed
        finally:
            worker.shutdown("test over")
            thread.join(60)
            worker.close()
