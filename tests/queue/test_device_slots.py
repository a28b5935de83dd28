"""A lab's devices as Prefect global concurrency limits, held by lease (on a real server)."""

from __future__ import annotations

import uuid

from remotelab.queue.device_slots import PrefectDeviceSlots, slot_name
from remotelab.queue.prefect_lab import PrefectLab


def active(prefect: PrefectLab, device: str) -> int:
    limit = prefect.client.read_global_concurrency_limit_by_name(slot_name(prefect.name, device))
    return limit.active_slots


def test_slots_are_taken_all_or_none_and_given_back(prefect_api):
    name = f"slots{uuid.uuid4().hex[:6]}"
    prefect = PrefectLab(name, prefect_api)
    slots = prefect.device_slots()
    assert isinstance(slots, PrefectDeviceSlots)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    lease = slots.take(a, ["heater", "thermometer"])
    assert lease
    assert active(prefect, "heater") == active(prefect, "thermometer") == 1
    # another holder is refused every device if one of them is taken, and takes none
    assert slots.take(b, ["balance", "heater"]) is None
    assert active(prefect, "balance") == 0
    assert slots.renew(lease)
    slots.give_back(lease)
    assert active(prefect, "heater") == active(prefect, "thermometer") == 0
    assert not slots.renew(lease)  # Prefect has forgotten it
    slots.give_back(lease)  # giving back twice is harmless
    other = slots.take(b, ["balance", "heater"])
    assert other and active(prefect, "heater") == 1
    slots.give_back(other)
    prefect.close()


def test_a_worker_alone_on_its_lab_frees_slots_whose_lease_nobody_knows(prefect_api):
    name = f"slots{uuid.uuid4().hex[:6]}"
    prefect = PrefectLab(name, prefect_api)
    slots = prefect.device_slots()
    lost = slots.take(str(uuid.uuid4()), ["stirrer"])  # its worker died before saying so
    assert lost and slots.take(str(uuid.uuid4()), ["stirrer"]) is None
    slots.reset(["stirrer", "heater"])
    fresh = slots.take(str(uuid.uuid4()), ["stirrer"])
    assert fresh and active(prefect, "stirrer") == 1
    slots.give_back(lost)  # the old lease frees nothing of the new limit
    assert active(prefect, "stirrer") == 1
    slots.give_back(fresh)
    assert active(prefect, "stirrer") == 0
    prefect.close()
