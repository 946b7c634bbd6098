"""The models ``eldercare models`` knows, by name.

Entries are ``"module:Class"`` strings, imported only when that model is asked for, so
listing the catalogue (and ``eldercare --help``) never imports scikit-learn. To add a
model: write a class satisfying :class:`eldercare.models.base.Model` and add a line here.
"""

from __future__ import annotations

import importlib
from typing import Final

from eldercare.errors import UnknownModel
from eldercare.models.base import Model

CATALOGUE: Final[dict[str, str]] = {
    "triage": "eldercare.models.triage:TriageModel",
    "device_health": "eldercare.models.device_health:OfflineRiskModel",
    "fall": "eldercare.models.fall.detector:FallModel",
}


def names() -> list[str]:
    return sorted(CATALOGUE)


def get(name: str) -> Model:
    """A new instance of the model called ``name``."""
    try:
        target = CATALOGUE[name]
    except KeyError:
        raise UnknownModel(f"no model {name!r}; known: {', '.join(names()) or 'none'}") from None
    module, _, attr = target.partition(":")
    model = getattr(importlib.import_module(module), attr)()
    if not isinstance(model, Model) or model.name != name:
        raise UnknownModel(f"{target} is not a Model named {name!r}")
    return model
