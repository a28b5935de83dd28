"""Each device's behaviour on the simulated lab: settling, volumes, moves, stops, limits, faults."""

from __future__ import annotations

import threading

import pytest
from ophyd.status import wait as wait_status

from remotelab.devices import GRIPPER, LOST
from remotelab.errors import (
    DeviceFault,
    DeviceTimeout,
    LimitError,
    OutOfRangeReading,
    SampleError,
)
from remotelab.sim import Fault, inject_fault


def finish(status, timeout=30.0):
    wait_status(status, timeout=timeout)
    return status


def failure(status, timeout=30.0):
    """The exception a status failed with (the test fails if it succeeded)."""
    with pytest.raises(Exception) as info:
        wait_status(status, timeout=timeout)
    return info.value


# -- temperature controller -------------------------------------------------------------


def test_heater_set_completes_only_once_settled(lab):
    heater = lab["heater"]
    start = lab.clock.time()
    finish(heater.set(60.0))
    tolerance, hold = heater.tolerance.get(), heater.settle_time.get()
    assert abs(lab.world.zones["heater"].temperature() - 60.0) <= tolerance
    # ramping 38 °C at 10 °C/min takes 228 s, then the lag and the settle time
    assert lab.clock.time() - start >= 38 / 10 * 60 + hold
    assert heater.setpoint.get() == 60.0


def test_heater_tighter_tolerance_waits_longer(lab):
    heater = lab["heater"]
    heater.tolerance.put(1.0)
    t0 = lab.clock.time()
    finish(heater.set(40.0))
    loose = lab.clock.time() - t0
    heater.tolerance.put(0.05)
    t1 = lab.clock.time()
    finish(heater.set(58.0))
    tight = lab.clock.time() - t1
    assert tight > loose
    assert abs(lab.world.zones["heater"].temperature() - 58.0) <= 0.05


def test_heater_refuses_setpoint_outside_limits_before_anything_moves(lab):
    heater = lab["heater"]
    with pytest.raises(LimitError) as info:
        heater.set(120.0)
    message = str(info.value)
    assert "heater" in message and "120" in message and "[10.0, 95.0]" in message
    assert lab.world.zones["heater"].setpoint == pytest.approx(22.0)  # untouched
    with pytest.raises(LimitError):
        heater.ramp_rate.put(50.0)


def test_heater_stop_holds_present_temperature(lab):
    heater = lab["heater"]
    status = heater.set(90.0)
    # wait until it is on its way, then stop
    tick = threading.Event()
    while lab.world.zones["heater"].temperature() < 30.0 and not status.done:
        tick.wait(0.001)
    heater.stop()
    err = failure(status)
    assert isinstance(err, DeviceFault) and "stopped" in str(err)
    held = lab.world.zones["heater"].setpoint
    assert 22.0 < held < 90.0
    assert heater.setpoint.get() == pytest.approx(held)


# -- syringe pump -----------------------------------------------------------------------


def test_pump_tracks_dispensed_and_remaining_volume(lab):
    pump, beaker = lab["pump"], lab.world.samples["T001"]
    before = beaker.volume_ml
    finish(pump.set(4.0))
    finish(pump.dispense(2.5))
    assert pump.dispensed.get() == pytest.approx(6.5)
    assert pump.remaining.get() == pytest.approx(43.5)
    assert beaker.volume_ml == pytest.approx(before + 6.5)
    assert beaker.composition["naoh"] > 0


def test_pump_refuses_more_than_it_holds_and_cannot_undispense(lab):
    pump = lab["pump"]
    finish(pump.set(10.0))
    with pytest.raises(LimitError, match="pump"):
        pump.set(5.0)
    with pytest.raises(LimitError, match="pump"):
        pump.dispense(45.0)  # 40 mL left
    assert pump.remaining.get() == pytest.approx(40.0)


def test_pump_failure_records_only_what_was_dispensed(lab):
    pump, beaker = lab["pump"], lab.world.samples["T001"]
    inject_fault(pump, Fault.FAIL)
    err = failure(pump.dispense(8.0))
    assert isinstance(err, DeviceFault) and "pump" in str(err)
    assert pump.dispensed.get() == pytest.approx(4.0)  # stalled half-way
    assert pump.remaining.get() == pytest.approx(46.0)
    assert beaker.volume_ml == pytest.approx(24.0)


def test_pump_refill(lab):
    pump = lab["pump"]
    finish(pump.set(20.0))
    finish(pump.refill())
    assert pump.remaining.get() == pytest.approx(50.0)
    assert pump.dispensed.get() == 0.0


# -- stirrer ----------------------------------------------------------------------------


def test_stirrer_reaches_speed_and_stops(lab):
    stirrer = lab["stirrer"]
    finish(stirrer.set(800))
    assert stirrer.position == pytest.approx(800, abs=16)
    with pytest.raises(LimitError):
        stirrer.set(5000)
    finish(lab["stirrer"].go_safe())
    assert stirrer.position == pytest.approx(0, abs=5)


# -- sample arm and tracking ------------------------------------------------------------


def test_arm_moves_a_sample_and_the_tracker_follows(lab):
    arm = lab["arm"]
    finish(arm.set(("rack_a/2", "balance")))
    assert lab.tracker.where("S002") == "balance"
    assert lab.world.samples["S002"].location == "balance"
    assert arm.position == "balance"
    finish(arm.move_sample("S002", "rack_a/2"))
    assert lab.tracker.where("S002") == "rack_a/2"
    assert [m.destination for m in lab.tracker.history] == [GRIPPER, "balance", GRIPPER, "rack_a/2"]


def test_arm_refuses_bad_moves_before_moving(lab):
    arm = lab["arm"]
    with pytest.raises(SampleError, match="no sample at rack_a/8"):
        arm.set(("rack_a/8", "balance"))
    with pytest.raises(SampleError, match="already holds sample T001"):
        arm.set(("rack_a/1", "titration"))
    with pytest.raises(SampleError, match="not a location"):
        arm.set(("rack_a/1", "freezer"))
    with pytest.raises(SampleError, match="unknown sample"):
        arm.move_sample("S999", "balance")
    assert arm.position == "home" and lab.tracker.history == []


def test_arm_stop_mid_move_keeps_the_record_true(lab):
    arm = lab["arm"]
    arm.backend.travel_s = 600.0  # a long way to travel: stop it on the road
    status = arm.set(("rack_a/3", "spectrometer"))
    picked = threading.Event()
    while not status.done and lab.tracker.where("S003") != GRIPPER:
        picked.wait(0.001)
    arm.stop()
    err = failure(status)
    assert "stopped" in str(err)
    assert arm.position == "unknown"
    # whatever the arm had done is recorded, no more
    assert lab.tracker.where("S003") == lab.world.samples["S003"].location
    arm.backend.travel_s = 4.0
    lab.safe_state()
    assert arm.position == "home"


def test_dropped_sample_is_recorded_lost_not_moved(lab):
    arm = lab["arm"]
    inject_fault(arm, Fault.DROP)
    err = failure(arm.set(("rack_a/1", "spectrometer")))
    assert "dropped sample S001" in str(err)
    assert lab.tracker.where("S001") == LOST
    assert lab.tracker.at("spectrometer") is None
    assert lab.world.samples["S001"].location == "floor"


def test_failed_pick_leaves_the_sample_where_it_was(lab):
    arm = lab["arm"]
    inject_fault(arm, Fault.FAIL)
    err = failure(arm.set(("rack_a/4", "balance")))
    assert "injected fault" in str(err)
    assert lab.tracker.where("S004") == "rack_a/4"
    finish(arm.set(("rack_a/4", "balance")))  # the fault was consumed: it works now
    assert lab.tracker.where("S004") == "balance"


# -- liquid handler ---------------------------------------------------------------------


def test_liquid_handler_tracks_volumes(lab):
    pipette = lab["pipette"]
    finish(pipette.transfer("reagent_a/1", "plate/2", 300))
    finish(pipette.transfer("reagent_b/1", "plate/2", 100))
    assert pipette.volume("plate/2") == pytest.approx(400)
    assert pipette.volume("reagent_a/1") == pytest.approx(14700)
    well = lab.world.wells["plate/2"]
    assert well.composition["reagent_a"] == pytest.approx(0.05 * 300 / 400)
    with pytest.raises(LimitError, match="plate/2"):
        pipette.transfer("reagent_a/1", "plate/2", 700)  # 1000 µL wells
    with pytest.raises(LimitError, match="volume"):
        pipette.transfer("reagent_a/1", "plate/3", 2000)  # more than a tip takes
    with pytest.raises(SampleError, match="unknown well"):
        pipette.transfer("reagent_c/1", "plate/3", 10)


def test_failed_dispense_is_not_recorded_as_done(lab):
    pipette = lab["pipette"]
    inject_fault(pipette, Fault.FAIL, action="dispense")
    err = failure(pipette.transfer("reagent_a/1", "plate/5", 100))
    assert isinstance(err, DeviceFault) and "dispense" in str(err)
    # the liquid left the reservoir and sits in the tip: neither well records a dispense
    assert pipette.volume("plate/5") == 0.0 == lab.world.wells["plate/5"].volume_ul
    assert pipette.volume("reagent_a/1") == pytest.approx(14900)
    assert pipette.tip_volume.get() == pytest.approx(100)
    finish(pipette.go_safe())
    assert pipette.tip_volume.get() == 0.0


# -- sensors and faults -----------------------------------------------------------------


def test_fault_fail_surfaces_as_failed_trigger(lab):
    inject_fault(lab["ph_meter"], Fault.FAIL)
    err = failure(lab["ph_meter"].trigger())
    assert isinstance(err, DeviceFault)
    assert str(err).startswith("ph_meter:") and "injected fault" in str(err)
    finish(lab["ph_meter"].trigger())


def test_fault_out_of_range_names_the_reading_and_range(lab):
    inject_fault(lab["thermometer"], Fault.OUT_OF_RANGE)
    err = failure(lab["thermometer"].trigger())
    assert isinstance(err, OutOfRangeReading)
    assert "thermometer" in str(err) and "9999" in str(err) and "[-50.0, 300.0]" in str(err)


def test_fault_hang_times_out_and_stops_the_device(lab):
    balance = lab["balance"]
    balance.operation_timeout = 0.5  # clock seconds; the watchdog waits at least 1 s of wall time
    inject_fault(balance, Fault.HANG)
    err = failure(balance.trigger())
    assert isinstance(err, DeviceTimeout)
    assert "balance" in str(err) and "did not finish" in str(err)


def test_safe_state_after_faults(lab):
    inject_fault(lab["heater"], Fault.FAIL)
    failure(lab["heater"].set(50.0))
    finish(lab["stirrer"].set(600))
    finish(lab["arm"].set(("rack_a/5", "balance")))
    lab["heater"].setpoint.put(70.0)
    report = lab.safe_state()
    assert set(report) == set(lab.devices)
    assert lab.world.zones["heater"].setpoint == 25.0
    assert lab["stirrer"].position == pytest.approx(0, abs=5)
    assert lab["arm"].position == "home"
    assert lab["pipette"].tip_volume.get() == 0.0
