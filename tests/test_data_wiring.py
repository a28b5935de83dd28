"""``remotelab.data.attach``: the store and the publisher on a RunEngine, and off again."""

from __future__ import annotations

import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky.plans import count
from bluesky.utils import RunEngineInterrupted

from _wiring_support import RecordingPublisher
from remotelab.data import RunStore, attach


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "runs.sqlite", plots=False)
    yield s
    s.close()


def test_attach_stores_then_publishes_and_follows_pause(lab, store):
    RE = RunEngine({}, context_managers=[])
    earlier: list[str] = []

    def earlier_hook(new, old):
        earlier.append(str(new))

    RE.state_hook = earlier_hook
    publisher = RecordingPublisher(store, "E-wire")
    attachment = attach(RE, store=store, publisher=publisher)
    assert len(attachment.tokens) == 2

    def plan():
        yield from bps.open_run(md={"experiment_id": "E-wire"})
        yield from bps.checkpoint()
        yield from bps.pause()
        yield from bps.trigger_and_read([lab["thermometer"]])
        yield from bps.close_run()

    with pytest.raises(RunEngineInterrupted):
        RE(plan())
    RE.resume()
    (run,) = store.runs(experiment_id="E-wire")
    assert run.status == "success" and run.num_events == 1
    assert publisher.documents == ["start", "descriptor", "event", "stop"]
    assert publisher.start_was_stored == [True]  # the store got it before the publisher
    assert "paused" in publisher.states and publisher.states[-1] == "idle"
    assert earlier == publisher.states  # the hook that was there is still called

    attachment.detach()
    assert RE.state_hook is earlier_hook
    RE(count([lab["thermometer"]], num=1), experiment_id="E-after")
    assert store.runs(experiment_id="E-after") == []
    assert publisher.documents == ["start", "descriptor", "event", "stop"]


def test_attach_store_only_leaves_the_state_hook_alone(lab, store):
    RE = RunEngine({}, context_managers=[])
    with attach(RE, store=store) as attachment:
        assert RE.state_hook is None and len(attachment.tokens) == 1
        (uid,) = RE(count([lab["thermometer"]], num=2))
    assert store.run(uid).num_events == 2
    RE(count([lab["thermometer"]], num=1), experiment_id="E-detached")
    assert store.runs(experiment_id="E-detached") == []


def test_attach_names_the_lanes_experiment_in_each_state(lab, store):
    RE = RunEngine({}, context_managers=[])
    publisher = RecordingPublisher(store, "E-lane")
    now = {"id": "E-lane"}
    attach(RE, store=store, publisher=publisher, experiment=lambda: now["id"])
    RE(count([lab["thermometer"]], num=1), experiment_id="E-lane")
    assert publisher.states and set(publisher.experiments) == {"E-lane"}
    now["id"] = "E-next"  # asked at each change, not once
    RE(count([lab["thermometer"]], num=1), experiment_id="E-next")
    assert publisher.experiments[-1] == "E-next"
