"""What every model in :mod:`eldercare.models` is and returns: the :class:`Model` protocol,
the :class:`Dataset` it trains on and the :class:`Report` its evaluation writes.

Pure types (numpy only): scikit-learn and skops are imported by the models and the
artefact store when they run, so ``eldercare --help`` stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np
import orjson

from eldercare.config import Settings
from eldercare.errors import NotEnoughData

Scalar = float | int | str | bool | None


@dataclass(frozen=True, slots=True)
class Context:
    """Where a model's data comes from and what fixes a run: the settings (database, the
    artefact folder), the clock's ``now`` (no model reads the wall clock), and a seed for
    everything random, so a report is reproduced by re-running its command."""

    settings: Settings
    now: datetime
    seed: int = 0

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("Context.now must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Dataset:
    """A feature matrix and its labels, row-aligned.

    ``order`` (seconds since the epoch, one per row) is what a time split cuts on;
    ``groups`` (one per row: a device, a subject) is what a group split keeps together.
    ``synthetic`` says whether any label came from a generator rather than a person.
    """

    X: np.ndarray
    y: np.ndarray
    features: tuple[str, ...]
    synthetic: bool
    source: str
    order: np.ndarray | None = None
    groups: np.ndarray | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.X.ndim != 2 or self.X.shape[1] != len(self.features):
            raise ValueError(
                f"X has shape {self.X.shape}; expected (rows, {len(self.features)} features)"
            )
        n = self.X.shape[0]
        for name in ("y", "order", "groups"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"{name} has {len(v)} rows, X has {n}")

    @property
    def rows(self) -> int:
        return int(self.X.shape[0])

    def take(self, index: np.ndarray) -> Dataset:
        """The rows at ``index`` (a boolean mask or positions), everything else kept."""
        return Dataset(
            X=self.X[index],
            y=self.y[index],
            features=self.features,
            synthetic=self.synthetic,
            source=self.source,
            order=None if self.order is None else self.order[index],
            groups=None if self.groups is None else self.groups[index],
            extra=self.extra,
        )

    def time_split(self, test_share: float = 0.3) -> tuple[Dataset, Dataset]:
        """Train on the earlier rows, test on the later ones (never a random split: a
        model that has seen next month must not be graded on it)."""
        if self.order is None:
            raise ValueError("a time split needs Dataset.order")
        if not 0 < test_share < 1:
            raise ValueError("test_share must be in (0, 1)")
        cut = float(np.quantile(self.order, 1 - test_share))
        train, test = self.take(self.order < cut), self.take(self.order >= cut)
        if train.rows == 0 or test.rows == 0:
            raise NotEnoughData(f"a time split of {self.rows} rows left one side empty")
        return train, test

    def require(self, *, rows: int, classes: int = 2) -> None:
        """Refuse to train on fewer rows or classes than the model needs."""
        found = len(np.unique(self.y)) if self.rows else 0
        if self.rows < rows or found < classes:
            raise NotEnoughData(
                f"{self.source}: {self.rows} rows and {found} classes; "
                f"need at least {rows} rows and {classes} classes"
            )


@dataclass(frozen=True, slots=True)
class Table:
    """A small table of a report (markdown and JSON)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Scalar, ...], ...]

    def __post_init__(self) -> None:
        for r in self.rows:
            if len(r) != len(self.columns):
                raise ValueError(f"{self.title}: row {r!r} does not match {self.columns}")


def _cell(v: Scalar) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    return "–" if v is None else str(v)


@dataclass(frozen=True, slots=True)
class Report:
    """An evaluation report: headline metrics, tables and notes. ``synthetic`` is printed
    at the top, so nobody mistakes a report on generated data for field evidence."""

    model: str
    title: str
    summary: str
    metrics: Mapping[str, Scalar]
    synthetic: bool
    data: str
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()

    def as_dict(self, command: str = "") -> dict[str, Any]:
        return {
            "model": self.model,
            "title": self.title,
            "summary": self.summary,
            "synthetic": self.synthetic,
            "data": self.data,
            "command": command,
            "metrics": dict(self.metrics),
            "tables": [
                {"title": t.title, "columns": list(t.columns), "rows": [list(r) for r in t.rows]}
                for t in self.tables
            ],
            "notes": list(self.notes),
        }

    def to_json(self, command: str = "") -> bytes:
        return orjson.dumps(self.as_dict(command), option=orjson.OPT_INDENT_2) + b"\n"

    def to_markdown(self, command: str = "") -> str:
        out = [f"# {self.title}", ""]
        if self.synthetic:
            out += [
                "**Evaluated on synthetic data** (simulated devices and operators). "
                "These figures show the pipeline works; they are not field evidence.",
                "",
            ]
        if command:
            out += ["Generated by:", "", "```sh", command, "```", ""]
        out += [self.summary, "", f"Data: {self.data}", "", "| metric | value |", "| --- | --- |"]
        out += [f"| {k} | {_cell(v)} |" for k, v in self.metrics.items()]
        for t in self.tables:
            out += ["", f"## {t.title}", "", "| " + " | ".join(t.columns) + " |"]
            out.append("|" + " --- |" * len(t.columns))
            out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in t.rows]
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"


@runtime_checkable
class Model(Protocol):
    """A model the ``eldercare models`` command can train, evaluate and promote.

    - ``name``: the catalogue key and the artefact folder's name.
    - ``trusted_types``: the skops allow-list: every type in a saved artefact that skops
      does not trust by default must be listed here, or saving and loading refuse it.
    - ``dataset``: the labelled rows (from the database, a generator, a package's data).
    - ``fit``: a fitted estimator on those rows (what the artefact stores).
    - ``evaluate``: its own honest split (time, subject), fit on one side, measure on the
      other; the report is what ``eldercare models evaluate`` writes.
    - ``score``: the probability of the positive class for feature rows ``X``.
    """

    name: str
    description: str
    trusted_types: frozenset[str]

    def dataset(self, ctx: Context) -> Dataset: ...

    def fit(self, data: Dataset, ctx: Context) -> Any: ...

    def evaluate(self, data: Dataset, ctx: Context) -> Report: ...

    def score(self, estimator: Any, X: np.ndarray) -> np.ndarray: ...
