"""The bench's plans on its simulated twin (the remotelab pytest plugin's fixtures)."""

import pytest

from remotelab.errors import PlanValidationError
from remotelab.plans import registry_for


def test_hold_and_read_settles_at_the_temperature(run_plan):
    result = run_plan("hold_and_read", temperature=40.0, readings=3)

    assert result.exit_status == "success"
    assert [event["seq_num"] for event in result.events()] == [1, 2, 3]
    for temperature in result.data("thermometer_temperature"):
        assert temperature == pytest.approx(40.0, abs=0.5)


def test_a_temperature_beyond_the_heater_is_refused(run_plan):
    with pytest.raises(PlanValidationError, match="temperature"):
        run_plan("hold_and_read", temperature=150.0)


def test_every_plan_example_is_valid_on_this_lab(remotelab_lab):
    registry = registry_for(remotelab_lab)
    for described in registry.describe():
        registry.validate(described["name"], described["example"], lab=remotelab_lab)
