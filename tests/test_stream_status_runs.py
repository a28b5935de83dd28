"""The stream's worker status with several experiments running at once: each followed in its
own entry of ``running``, from documents of interleaved runs."""

from __future__ import annotations

from remotelab.stream import StreamPublisher


def docs_of(exp: str, run: str, total: int) -> dict[str, dict]:
    return {
        "start": {
            "uid": run,
            "experiment_id": exp,
            "plan_name": f"plan-{exp}",
            "num_points": total,
        },
        "descriptor": {"uid": f"d-{run}", "run_start": run},
        "event": {"descriptor": f"d-{run}"},
        "stop": {"run_start": run, "exit_status": "success"},
    }


def test_two_interleaved_runs_are_counted_each_in_its_own_entry():
    publisher = StreamPublisher("tcp://127.0.0.1:1", heartbeat=None, progress_rate=0)
    try:
        a, b = docs_of("A", "ra", 3), docs_of("B", "rb", 5)
        for name in ("start", "descriptor"):
            publisher(name, a[name])
            publisher(name, b[name])
        for doc in (a, b, b, a, b):
            publisher("event", doc["event"])
        running = publisher.status["running"]
        assert running["A"]["progress"] == {"done": 2, "total": 3}
        assert running["B"]["progress"] == {"done": 3, "total": 5}
        assert running["A"]["plan_name"] == "plan-A" and running["B"]["run_uid"] == "rb"
        publisher.on_engine_state("paused", "running", experiment="A")
        assert running["A"]["state"] == "paused" and running["B"]["state"] == "running"
        assert publisher.status["state"] == "running"  # B still runs
        publisher.on_engine_state("paused", "running", experiment="B")
        assert publisher.status["state"] == "paused"  # every running one is paused
        publisher.on_engine_state("running", "paused", experiment="A")
        publisher("stop", b["stop"])
        assert set(publisher.status["running"]) == {"A"}
        assert publisher.status["state"] == "running"
        publisher("event", a["event"])
        assert publisher.status["running"]["A"]["progress"]["done"] == 3
        publisher("stop", a["stop"])
        publisher.on_engine_state("idle", "running", experiment="A")
        assert publisher.status["running"] == {} and publisher.status["state"] == "idle"
    finally:
        publisher.close()
