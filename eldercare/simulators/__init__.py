"""Device simulators: one protocol-speaking :class:`SimDevice`, and seeded fleets.

- :mod:`.device` — :class:`SimDevice`, a single device for tests (own I/O thread).
- :mod:`.scenario` — pure, seeded "what happens next" logic (no I/O).
- :mod:`.fleet` — :class:`Fleet` provisioning and the many-devices-per-process runner.
- :mod:`.demo` — what ``eldercare demo`` runs (the command is :mod:`eldercare.cli.simulate`
  and :mod:`eldercare.cli.demo`).

Names are resolved lazily: importing the package must not pull in paho or psycopg.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SimDevice": "device",
    "Scenario": "scenario",
    "DevicePlan": "scenario",
    "Action": "scenario",
    "Op": "scenario",
    "Fleet": "fleet",
    "FleetPlan": "fleet",
    "FleetStats": "fleet",
    "FleetRunner": "fleet",
    "run_fleet_process": "fleet",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
