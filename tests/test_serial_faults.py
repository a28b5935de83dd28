"""Wire faults: each one meets the right typed error, and the line is clean afterwards."""

from __future__ import annotations

import threading
import time

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from bluesky.utils import FailedStatus

from remotelab.devices.serial import make_serial_backend
from remotelab.errors import (
    DeviceFault,
    DeviceTimeout,
    Disconnected,
    InstrumentError,
    ProtocolError,
    SerialTimeout,
)
from remotelab.lab import load_lab
from remotelab.sim import Fault, SimClock, World, inject_fault
from remotelab.sim.server import GARBAGE_BYTES, WireFault, serve_instrument

SPEED = 2000.0
TIMEOUT = 0.25  # real seconds per command in these tests


@pytest.fixture(params=["pty", "tcp"])
def heater(request):
    """A temperature controller served on a pty or a TCP port, and its serial backend."""
    world = World(seed=5, clock=SimClock(SPEED))
    server = serve_instrument(
        world, "heater", "TemperatureController", {"zone": "heater"}, transport=request.param
    )
    backend = make_serial_backend(
        "heater",
        "TemperatureController",
        server.port,
        clock=world.clock,
        timeout=TIMEOUT,
        retries=2,
    )
    backend.write("setpoint", 60.0)
    yield server, backend
    backend.close()
    server.close()


@pytest.fixture
def pump():
    world = World(seed=5, clock=SimClock(SPEED))
    world.add_sample("T001", "titration", {"acetic_acid": 0.08}, 20.0, 55.0)
    server = serve_instrument(world, "pump", "SyringePump")
    backend = make_serial_backend(
        "pump", "SyringePump", server.port, clock=world.clock, timeout=TIMEOUT
    )
    yield server, backend
    backend.close()
    server.close()


def names_device_and_port(exc: Exception, backend) -> None:
    assert "heater" in str(exc) or "pump" in str(exc)
    assert backend.port in str(exc)
    assert exc.port == backend.port


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    """Wait until ``condition()`` is true (the simulator logs commands in its own thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_no_reply_is_a_timeout_after_the_retries_each_preceded_by_a_resync(heater):
    server, backend = heater
    before = len(server.received)
    server.inject(WireFault.NO_REPLY, match="MEAS:TEMP?", times=None)
    with pytest.raises(SerialTimeout) as info:
        backend.read("temperature")
    names_device_and_port(info.value, backend)
    assert "MEAS:TEMP?" in str(info.value)
    # an idempotent query is tried 1 + retries times; before each retry the line is
    # resynchronised (the identity comes back, so it is not reopened)
    wait_for(lambda: server.received.count("MEAS:TEMP?") == 3, "the third attempt")
    assert list(server.received)[before:] == [
        "MEAS:TEMP?",
        "*IDN?",
        "MEAS:TEMP?",
        "*IDN?",
        "MEAS:TEMP?",
    ]
    server.clear_faults()
    assert backend.read("setpoint") == 60.0
    assert list(server.received)[before + 5 :] == ["*IDN?", "SOUR:TEMP?"]


def test_a_one_off_lost_reply_of_an_idempotent_query_is_retried(heater):
    server, backend = heater
    server.inject(WireFault.NO_REPLY, match="SOUR:TEMP?")
    assert backend.read("setpoint") == 60.0
    assert server.received.count("SOUR:TEMP?") == 2


def test_a_setting_is_never_retried(heater):
    server, backend = heater
    server.inject(WireFault.NO_REPLY, match="SOUR:TEMP ")
    with pytest.raises(SerialTimeout):
        backend.write("setpoint", 45.0)
    assert server.received.count("SOUR:TEMP 45.0;*OPC?") == 1
    assert backend.read("setpoint") == 45.0  # the command was carried out, its reply lost


def test_a_late_reply_never_answers_the_next_command(heater):
    server, backend = heater
    server.inject(WireFault.LATE, match="SOUR:TEMP ", delay=3 * TIMEOUT)
    with pytest.raises(SerialTimeout, match=r"no reply to 'SOUR:TEMP 45\.0;\*OPC\?'"):
        backend.write("setpoint", 45.0)
    # the late "1" arrives while the driver resynchronises; it is not taken for the setpoint
    assert backend.read("setpoint") == 45.0
    # a late answer to an idempotent query: timed out, resynchronised, asked again
    server.inject(WireFault.LATE, match="SOUR:TEMP:RAMP?", delay=2 * TIMEOUT)
    assert backend.read("ramp_rate") == 10.0
    assert server.received.count("SOUR:TEMP:RAMP?") == 2


def test_garbage_is_a_protocol_error_with_the_bytes_received(heater):
    server, backend = heater
    server.inject(WireFault.GARBAGE, match="SOUR:TEMP ")
    with pytest.raises(ProtocolError) as info:
        backend.write("setpoint", 50.0)
    exc = info.value
    assert not isinstance(exc, InstrumentError)
    assert exc.received == GARBAGE_BYTES
    names_device_and_port(exc, backend)
    assert backend.read("setpoint") == 50.0
    # garbage in answer to an idempotent query is retried
    server.inject(WireFault.GARBAGE, match="SOUR:TEMP?")
    assert backend.read("setpoint") == 50.0


def test_an_error_reply_is_an_instrument_error_and_the_command_is_not_carried_out(heater):
    server, backend = heater
    server.inject(WireFault.ERROR, match="SOUR:TEMP ")
    with pytest.raises(InstrumentError) as info:
        backend.write("setpoint", 70.0)
    exc = info.value
    assert exc.code == "-300" and exc.received.startswith(b'ERR -300,"Device-specific error')
    names_device_and_port(exc, backend)
    assert backend.read("setpoint") == 60.0
    # the instrument's own refusals come back the same way
    with pytest.raises(InstrumentError, match="Undefined header"):
        backend.command("SOUR:VOLT 3")


def test_a_dropped_line_is_reopened_and_no_half_reply_is_left_behind(heater):
    server, backend = heater
    connects = backend.transport.connects
    server.inject(WireFault.DROP, match="SOUR:TEMP?")
    assert backend.read("setpoint") == 60.0  # dropped mid-reply, reconnected, asked again
    assert backend.transport.connects == connects + 1
    server.inject(WireFault.DROP, match="SOUR:TEMP ")
    with pytest.raises(Disconnected) as info:
        backend.write("setpoint", 30.0)
    names_device_and_port(info.value, backend)
    assert backend.read("ramp_rate") == 10.0  # the next command reconnects
    assert backend.transport.connects == connects + 2


def test_a_line_that_stays_down_is_disconnected_after_backing_off(heater):
    server, backend = heater
    server.close()
    backend.transport.reconnect_attempts = 2
    with pytest.raises(Disconnected) as info:
        backend.read("setpoint")
    names_device_and_port(info.value, backend)


def test_vendor_ascii_faults_and_error_replies(pump):
    server, backend = pump
    server.inject(WireFault.ERROR, match="DSP")
    with pytest.raises(InstrumentError) as info:
        backend.run("dispense", volume=1.0)
    assert info.value.code == "9" and info.value.received == b"ER 9 injected fault"
    assert backend.read("dispensed") == 0.0
    server.inject(WireFault.GARBAGE, match="DIS?", times=3)
    with pytest.raises(ProtocolError):
        backend.read("dispensed")
    server.inject(WireFault.DROP, match="STA?")
    backend.run("dispense", volume=2.0)  # a status poll dropped; reconnected, polled again
    assert backend.read("dispensed") == 2.0
    with pytest.raises(DeviceFault, match="only 48 mL left, 60 asked"):
        backend.run("dispense", volume=60.0)  # refused by the pump, reported by its status


def test_stop_interrupts_a_long_dispense(pump):
    server, backend = pump
    backend.write("rate", 1.0)  # 10 mL at 1 mL/min: 600 clock seconds
    errors: list[Exception] = []

    def dispense() -> None:
        try:
            backend.run("dispense", volume=10.0)
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=dispense)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.handler.busy:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    backend.stop()
    thread.join(timeout=10)
    assert len(errors) == 1 and isinstance(errors[0], DeviceFault)
    assert "dispense stopped after" in str(errors[0])
    assert 0 < backend.read("dispensed") < 10.0


def test_stopping_an_unresponsive_instrument_sends_the_stop_without_resyncing(heater):
    server, backend = heater
    server.inject(WireFault.NO_REPLY, times=None)  # the instrument stops answering
    with pytest.raises(SerialTimeout):
        backend.write("setpoint", 45.0)  # the line is now out of step
    before, connects = len(server.received), backend.transport.connects
    backend.stop()  # written at once; its reply is left to the next command's resync
    wait_for(lambda: "ABOR;*OPC?" in list(server.received)[before:], "the stop")
    assert list(server.received)[before:] == ["ABOR;*OPC?"]  # no *IDN? resync before it
    assert backend.transport.connects == connects  # and no reopening of the line
    server.clear_faults()
    held = server.instrument.get_setpoint()  # the stop reached it: it holds where it was
    assert held != 45.0
    assert backend.read("setpoint") == held  # the next command resynchronises first
    assert list(server.received)[before + 1 :] == ["*IDN?", "SOUR:TEMP?"]


def test_stopping_a_closed_line_is_disconnected_at_once_without_reconnecting(heater):
    server, backend = heater
    server.inject(WireFault.DROP, match="SOUR:TEMP ")
    with pytest.raises(Disconnected):
        backend.write("setpoint", 30.0)
    assert not backend.transport.is_open
    before, connects = len(server.received), backend.transport.connects
    with pytest.raises(Disconnected, match="closed") as info:
        backend.stop()
    names_device_and_port(info.value, backend)
    assert backend.transport.connects == connects  # no reopen attempt on the stop path
    assert not backend.transport.is_open
    assert len(server.received) == before
    assert backend.read("setpoint") == 30.0  # an ordinary command reopens the line
    assert backend.transport.connects == connects + 1


def test_an_unresponsive_probe_does_not_hold_up_the_lab_safe_state():
    with load_lab("serial-sim", speed=SPEED) as lab:
        servers = {s.instrument.name: s for s in lab.simulators}
        probe = servers["thermometer"]
        lab["heater"].set(40).wait(30)
        probe.inject(WireFault.NO_REPLY, times=None)
        with pytest.raises(SerialTimeout):
            lab["thermometer"].backend.run("measure")
        before = len(probe.received)
        assert lab.safe_state() == dict.fromkeys(lab.devices, "safe")
        assert lab.world.zone("heater").setpoint == 25.0
        wait_for(lambda: "ABOR;*OPC?" in list(probe.received)[before:], "the probe's stop")
        assert list(probe.received)[before:] == ["ABOR;*OPC?"]  # no resync, no reconnect
        assert "*IDN?" not in list(probe.received)[before:]


def test_a_hung_measurement_is_stopped_by_the_watchdog_and_the_line_recovers():
    with load_lab("serial-sim", speed=SPEED) as lab:
        probe = lab["thermometer"]
        server = next(s for s in lab.simulators if s.instrument.name == "thermometer")
        inject_fault(probe, Fault.HANG)  # armed on the simulator behind the line
        assert server.instrument.faults.armed("measure") == (Fault.HANG,)
        status = probe.operate("measure", probe._measure, timeout=5.0)
        with pytest.raises(DeviceTimeout):
            status.wait(30)
        ok = probe.trigger()
        ok.wait(30)
        assert 15 < probe.temperature.get() < 30
        assert "ABOR;*OPC?" in server.received  # the watchdog's stop reached the instrument


def test_a_plan_meeting_an_unrecoverable_fault_ends_with_the_lab_safe():
    with load_lab("serial-sim", speed=SPEED) as lab:
        servers = {s.instrument.name: s for s in lab.simulators}
        world = lab.world

        def plan():
            yield from bps.mv(lab["heater"], 30)
            yield from bps.mv(lab["stirrer"], 400)
            yield from bps.mv(lab["arm"], ("rack_a/2", "spectrometer"))
            yield from bp.count([lab["thermometer"]])
            servers["thermometer"].close()  # the probe's line goes down for good
            yield from bp.count([lab["thermometer"]])

        engine = RunEngine({}, context_managers=[])
        with pytest.raises(FailedStatus) as info:
            engine(plan())
        assert isinstance(info.value.__cause__, Disconnected), repr(info.value.__cause__)
        assert "thermometer" in str(info.value.__cause__)
        assert world.zone("heater").setpoint == 30.0  # stopped by the RunEngine: holding
        assert servers["arm"].instrument.location == "spectrometer"
        assert lab.safe_state() == dict.fromkeys(lab.devices, "safe")
        assert world.zone("heater").setpoint == 25.0
        assert servers["stirrer"].instrument.get_setpoint() == 0.0
        assert servers["arm"].instrument.location == "home"
        assert servers["pipette"].instrument.tip_ul == 0.0


def test_an_instrument_failure_is_a_device_fault_naming_what_the_instrument_said():
    with load_lab("serial-sim", speed=SPEED) as lab:
        inject_fault(lab["ph_meter"], Fault.FAIL)
        status = lab["ph_meter"].trigger()
        with pytest.raises(DeviceFault) as info:
            status.wait(10)
        err = info.value
        assert isinstance(err, InstrumentError) and err.code == "-200"
        assert "instrument error during measure (injected fault)" in str(err)
        assert err.received.startswith(b'ERR -200,"Execution error;')
