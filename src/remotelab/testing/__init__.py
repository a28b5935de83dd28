"""Testing plans and labs with pytest: the ``remotelab`` pytest plugin's helpers.

The plugin (:mod:`remotelab.testing.plugin`, found through its ``pytest11`` entry point)
gives the fixtures ``remotelab_lab``, ``remotelab_store``, ``remotelab_engine``,
``run_plan``, ``remotelab_prefect``, ``remotelab_site`` and ``remotelab_client``; this
package holds what they are built from, to import for type hints or use without them.
Importing it is cheap: bluesky, Prefect and the lab are imported when first used.
"""

from remotelab.testing.choice import LabChoice, choose
from remotelab.testing.results import Document, NoRunError, PlanResult, events
from remotelab.testing.runner import FAST, SEED, PlanRunner, engine

__all__ = [
    "FAST",
    "SEED",
    "Document",
    "LabChoice",
    "NoRunError",
    "PlanResult",
    "PlanRunner",
    "choose",
    "engine",
    "events",
]
