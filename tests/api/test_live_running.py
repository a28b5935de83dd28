"""The gateway's live hub passes a worker status on whole, ``running`` included, and a status
reaches the listeners of every experiment running in it."""

from __future__ import annotations

import queue

from remotelab.api.live import LiveHub

STATUS = {
    "lab": "sim",
    "state": "running",
    "experiment_id": "E-b",
    "running": {
        "E-a": {
            "state": "paused",
            "plan_name": "scan",
            "run_uid": "r-a",
            "progress": {"done": 1, "total": 3},
            "engine_state": "paused",
        },
        "E-b": {
            "state": "running",
            "plan_name": "measure",
            "run_uid": "r-b",
            "progress": {"done": 0, "total": None},
            "engine_state": "running",
        },
    },
}


def drain(box: queue.Queue) -> list[dict]:
    items = []
    while not box.empty():
        items.append(box.get_nowait())
    return items


def test_status_with_several_running_reaches_each_experiments_listener():
    hub = LiveHub(None)
    with hub.listen("sim", "E-a") as a, hub.listen("sim", "E-c") as c, hub.listen("sim") as lab:
        hub.dispatch("status", "status", STATUS)
        assert [i["data"]["running"] for i in drain(a.box)] == [STATUS["running"]]
        assert drain(c.box) == []  # not running: not its status
        assert len(drain(lab.box)) == 1
    assert hub.lab_status("sim")["running"]["E-a"]["progress"] == {"done": 1, "total": 3}
