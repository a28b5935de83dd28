"""The gateway never touches the hardware: over a serial lab whose instrument ports do not
exist it starts, lists devices and plans, and validates submissions with the same answers
as over the simulated lab."""

from __future__ import annotations

import uuid
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from remotelab.api import API_PREFIX
from remotelab.cli.gateway import build_gateway
from remotelab.devices import OfflineBackend
from remotelab.lab import shipped_lab_text

#: submissions as a researcher; the answers must not depend on the lab's backends
SUBMISSIONS = [
    {"plan": "measure", "params": {"detectors": ["thermometer"], "num": 1}},
    {"plan": "measure", "params": {"detectors": ["heater", "nope"], "num": 0}},
    {
        "plan": "scan",
        "params": {"detectors": ["thermometer"], "motor": "heater", "start": 20, "stop": 99},
    },
    {"plan": "measure_samples", "params": {"samples": ["S999"], "station": "spectrometer"}},
]


def lab_file(directory: Path, shipped: str, *, absent_ports: bool) -> Path:
    data = yaml.safe_load(shipped_lab_text(shipped))
    data["name"] = f"o{uuid.uuid4().hex[:8]}"
    if absent_ports:  # a real bench: no simulators, ports nobody serves
        for name, device in data["devices"].items():
            device["options"] = {}
            device["port"] = f"/dev/ttyREMOTELAB-absent-{name}"
        data.pop("simulation")
    path = directory / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def answers(client: TestClient, lab: str, headers: dict) -> dict:
    base = f"{API_PREFIX}/labs/{lab}"
    devices = client.get(f"{base}/devices", headers=headers)
    plans = client.get(f"{base}/plans", headers=headers)
    assert devices.status_code == 200 and plans.status_code == 200
    submitted = []
    for body in SUBMISSIONS:
        r = client.post(f"{base}/experiments", json=body, headers=headers)
        reply = r.json()
        if r.status_code == 201:
            client.post(f"{base}/experiments/{reply['id']}/cancel", json={}, headers=headers)
            submitted.append((201, reply["plan"], reply["params"]))
        else:
            submitted.append((r.status_code, reply["detail"], reply["errors"]))
    return {
        "devices": [{k: v for k, v in d.items() if k != "backend"} for d in devices.json()],
        "plans": plans.json(),
        "submitted": submitted,
    }


def test_a_gateway_over_absent_serial_ports_answers_as_over_the_simulated_lab(
    tmp_path, prefect_api, monkeypatch
):
    monkeypatch.setenv("REMOTELAB_DATA_DIR", str(tmp_path / "data"))
    bench = lab_file(tmp_path, "serial-sim", absent_ports=True)
    sim = lab_file(tmp_path, "sim", absent_ports=False)
    app, names = build_gateway([bench, sim], prefect_api, None)
    gateway = app.state.gateway
    for svc in gateway.labs.values():
        assert not svc.lab.connected and svc.lab.simulators == []
        assert all(isinstance(d.backend, OfflineBackend) for d in svc.lab.devices.values())
    gateway.auth.add_user("alice", "researcher")
    headers = {"Authorization": f"Bearer {gateway.auth.create_token('alice').token}"}
    with TestClient(app) as client:
        on_bench, on_sim = (answers(client, name, headers) for name in names)
        listed = client.get(f"{API_PREFIX}/labs", headers=headers).json()
    assert on_bench == on_sim
    statuses = [s[0] for s in on_bench["submitted"]]
    assert statuses == [201, 422, 422, 422]
    problems = [(e["param"], e["message"]) for e in on_bench["submitted"][1][2]]
    assert [p for p, _ in problems] == ["num", "detectors", "detectors"]
    assert "greater than or equal to 1" in problems[0][1]
    assert "'heater' is a TemperatureController" in problems[1][1]
    assert "unknown device 'nope'" in problems[2][1]
    assert "outside heater's setpoint limits" in on_bench["submitted"][2][2][0]["message"]
    assert [lab["simulated"] for lab in listed] == [False, True]


def test_local_submit_validates_against_a_lab_whose_ports_do_not_exist(tmp_path, prefect_api):
    from typer.testing import CliRunner

    from remotelab.cli import app

    bench = lab_file(tmp_path, "serial-sim", absent_ports=True)
    runner = CliRunner()
    base = ["submit", "measure", "--lab", str(bench), "--api", prefect_api]
    ok = runner.invoke(app, [*base, "-p", 'detectors=["thermometer"]', "-p", "num=1"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.split()[-1] == "(queued)"
    bad = runner.invoke(app, [*base, "-p", 'detectors=["heater"]'])
    assert bad.exit_code != 0
    assert "'heater' is a TemperatureController" in " ".join(bad.output.split())
