"""The serial transport and drivers against simulated instruments on ptys and TCP ports."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import serial

from remotelab.devices.serial import make_serial_backend
from remotelab.errors import Disconnected, LabFileError
from remotelab.lab import Lab, parse_lab
from remotelab.sim import SimClock, World
from remotelab.sim.instruments import SimSyringePump, SimThermometer
from remotelab.sim.server import serve_instrument

SPEED = 2000.0
SRC = Path(__file__).resolve().parents[1] / "src"


def make_world(seed: int = 3) -> World:
    world = World(seed=seed, clock=SimClock(SPEED))
    world.add_sample("T001", "titration", {"acetic_acid": 0.08}, 20.0, 55.0)
    return world


@pytest.fixture
def thermometer():
    world = make_world()
    server = serve_instrument(world, "probe", "Thermometer", {"zone": "heater"})
    yield server
    server.close()


def test_plain_pyserial_client_gets_idn_and_a_measurement_from_the_pty(thermometer):
    twin = SimThermometer(make_world(), "probe", zone="heater")  # same seed, same name
    assert thermometer.pty_path.startswith("/dev/pts/")
    with serial.Serial(thermometer.pty_path, 9600, timeout=5) as port:
        port.write(b"*IDN?\n")
        assert port.readline() == twin.identify().encode() + b"\n"
        port.write(b"MEAS?\n")
        reading = port.readline()
    assert reading.endswith(b"\n")
    assert float(reading) == twin.run("measure")["temperature"]
    assert 21 < float(reading) < 23


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
def test_socat_gets_idn_and_a_measurement_from_the_pty(thermometer):
    twin = SimThermometer(make_world(), "probe", zone="heater")
    out = subprocess.run(
        ["socat", "-t", "1", "-", f"{thermometer.pty_path},raw,echo=0"],
        input=b"*IDN?\nMEAS?\n",
        capture_output=True,
        timeout=30,
    )
    identity, reading = out.stdout.decode().splitlines()
    assert identity == twin.identify()
    assert float(reading) == twin.run("measure")["temperature"]


def test_plain_client_speaks_the_vendor_ascii_pump_protocol_over_tcp():
    server = serve_instrument(make_world(), "pump", "SyringePump", transport="tcp")
    twin = SimSyringePump(make_world(), "pump")
    try:
        with serial.serial_for_url(server.port, timeout=5) as port:
            port.write(b"IDN\r")
            assert port.read_until(b"\r") == twin.identify().encode() + b"\r"
            port.write(b"REM?\r")
            assert port.read_until(b"\r") == b"50.0\r"
            port.write(b"RAT 2.5\r")
            assert port.read_until(b"\r") == b"OK\r"
            port.write(b"RAT?\r")
            assert port.read_until(b"\r") == b"2.5\r"
            port.write(b"XYZ 1\r")
            assert port.read_until(b"\r") == b"ER 1 unknown command XYZ\r"
    finally:
        server.close()


def test_driver_reads_and_sets_over_the_pty():
    world = make_world()
    server = serve_instrument(world, "heater", "TemperatureController", {"zone": "heater"})
    try:
        backend = make_serial_backend(
            "heater", "TemperatureController", server.port, clock=world.clock
        )
        assert backend.read("setpoint") == 22.0
        backend.write("setpoint", 41.25)
        assert world.zone("heater").setpoint == 41.25
        backend.write("ramp_rate", 12.5)
        assert backend.read("ramp_rate") == 12.5
        assert backend.identify() == server.instrument.identify()
        backend.reset()  # *RST holds the present ramp target
        assert backend.next_error() == '0,"No error"'
        backend.close()
    finally:
        server.close()


def test_concurrent_reads_from_two_threads_never_interleave_on_the_wire():
    world = make_world()
    server = serve_instrument(world, "heater", "TemperatureController", {"zone": "heater"})
    backend = make_serial_backend("heater", "TemperatureController", server.port, clock=world.clock)
    backend.write("setpoint", 61.5)
    backend.write("ramp_rate", 3.25)
    answers: dict[str, list] = {"setpoint": [], "ramp_rate": []}
    start = threading.Barrier(2)

    def reader(quantity: str) -> None:
        start.wait()
        for _ in range(150):
            answers[quantity].append(backend.read(quantity))

    threads = [threading.Thread(target=reader, args=(q,)) for q in answers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert answers["setpoint"] == [61.5] * 150
        assert answers["ramp_rate"] == [3.25] * 150
        wire = list(server.received)
        assert wire.count("SOUR:TEMP?") == 150
        assert wire.count("SOUR:TEMP:RAMP?") == 150
        allowed = {
            "*IDN?",
            "*CLS;*OPC?",
            "SOUR:TEMP 61.5;*OPC?",
            "SOUR:TEMP:RAMP 3.25;*OPC?",
            "SOUR:TEMP?",
            "SOUR:TEMP:RAMP?",
        }
        assert set(wire) <= allowed, set(wire) - allowed
    finally:
        backend.close()
        server.close()


def test_traffic_is_logged_at_debug_level(thermometer, caplog):
    backend = make_serial_backend("probe", "Thermometer", thermometer.port)
    with caplog.at_level(logging.DEBUG, logger="remotelab.devices.serial"):
        backend.identify()
    backend.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any("probe" in m and "> b'*IDN?\\n'" in m for m in lines), lines
    assert any("< b'remotelab,SIM-THERMO-100" in m for m in lines), lines


def test_a_port_that_cannot_be_opened_is_a_typed_error_naming_device_and_port(tmp_path):
    missing = str(tmp_path / "ttyUSB9")
    with pytest.raises(Disconnected) as info:
        make_serial_backend("probe", "Thermometer", missing, reconnect_attempts=1)
    assert "probe" in str(info.value) and missing in str(info.value)
    assert info.value.port == missing


def test_lab_file_serial_entry_with_a_port(thermometer):
    text = f"""
name: bench
devices:
  probe:
    class: Thermometer
    backend: serial
    port: {thermometer.port}
    baudrate: 19200
    options: {{timeout: 0.5, retries: 1}}
"""
    with Lab(parse_lab(text)) as lab:
        backend = lab["probe"].backend
        assert backend.transport.baudrate == 19200 and backend.transport.timeout == 0.5
        assert lab.world is None  # a real serial lab: no simulated world, wall-clock time
        status = lab["probe"].trigger()
        status.wait(10)
        assert 21 < lab["probe"].temperature.get() < 23
    bad = text.replace("retries: 1", "retries: 1, bogus: 2")
    with pytest.raises(LabFileError, match=r"devices\.probe\.options: unknown serial option"):
        Lab(parse_lab(bad))
    bad = text.replace("timeout: 0.5", "timeout: -1")
    with pytest.raises(LabFileError, match=r"devices\.probe\.options: .*timeout must be"):
        Lab(parse_lab(bad))


@pytest.mark.parametrize("lab", [[], ["--lab", "serial-sim"]], ids=["default", "serial-sim"])
def test_cli_sim_instrument_prints_a_port_a_plain_client_can_use(lab):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "remotelab", "sim-instrument", "thermometer", "--tcp", "0", *lab],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("port: socket://127.0.0.1:"), first + proc.stderr.read()
        url = first.split()[1]
        with serial.serial_for_url(url, timeout=5) as port:
            port.write(b"*IDN?\n")
            assert port.readline().startswith(b"remotelab,SIM-THERMO-100,")
            port.write(b"MEAS?\n")
            assert 15 < float(port.readline()) < 30
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_sim_instrument_refuses_unknown_instruments_and_two_transports():
    from typer.testing import CliRunner

    from remotelab.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["sim-instrument", "kettle"])
    assert bad.exit_code == 2 and "no instrument 'kettle'" in bad.output
    both = runner.invoke(app, ["sim-instrument", "pump", "--pty", "--tcp", "0"])
    assert both.exit_code == 2 and "choose one of --pty and --tcp" in both.output
    nowhere = runner.invoke(app, ["sim-instrument", "pump", "--lab", "no-such-lab.yaml"])
    assert nowhere.exit_code == 2 and "cannot read lab file no-such-lab.yaml" in nowhere.output


def test_devices_never_import_the_simulator_or_the_lab_file_layer():
    import ast

    devices = SRC / "remotelab" / "devices"
    for path in devices.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                if node.module == "remotelab.errors":
                    assert "LabFileError" not in {a.name for a in node.names}, path
            assert not any(n.startswith("remotelab.sim") for n in names), path
            assert not any(n.startswith("remotelab.lab") for n in names), path


def test_make_serial_backend_takes_plain_arguments(thermometer):
    backend = make_serial_backend(
        "probe", "Thermometer", thermometer.port, baudrate=19200, timeout=0.5, retries=1
    )
    try:
        assert backend.transport.baudrate == 19200 and backend.transport.timeout == 0.5
        assert backend.identify() == thermometer.instrument.identify()
    finally:
        backend.close()
    with pytest.raises(ValueError, match="timeout must be positive"):
        make_serial_backend("probe", "Thermometer", thermometer.port, timeout=0)
