"""Machine-learning models (issue 9 part B, scikit-learn), and the machinery every model
shares. ``alerts`` never imports this package: scores reach the alert engine and the
console as rows in the database.

Public surface:

- :class:`Model` (protocol), :class:`Dataset`, :class:`Report`, :class:`Table`,
  :class:`Context` — :mod:`eldercare.models.base`;
- :class:`ArtefactStore` / :class:`Version` — skops artefacts with an allow-list and a
  sha256 manifest (:mod:`eldercare.models.artefacts`);
- :mod:`eldercare.models.catalogue` — the models by name;
- :mod:`eldercare.models.workflow` — ``train``, ``evaluate``, ``promote``, ``load``.

Errors: :class:`eldercare.errors.ModelError` and its subclasses.
"""

from eldercare.models.artefacts import ArtefactStore, Version
from eldercare.models.base import Context, Dataset, Model, Report, Table

__all__ = ["ArtefactStore", "Context", "Dataset", "Model", "Report", "Table", "Version"]
