"""A random forest as plain arrays, and a numpy walker that scores with them.

The shadow scorer loads the model once through the artefact store (sha256 and skops
allow-list checked), then :func:`export_forest` (the only function here that touches
sklearn objects) turns it into flat arrays. :meth:`Forest.proba` walks every tree of every
window at once, one level per step, so a single window costs tens of microseconds rather
than the ~1.4 ms of ``predict_proba`` (design §4.3). Parity with ``predict_proba`` is
tested (tests/test_fall_model.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from eldercare.errors import InvalidInput


@dataclass(frozen=True, slots=True, eq=False)
class Forest:
    """All trees' nodes in one set of arrays; a leaf points to itself on both sides, so
    walking ``depth`` steps lands every window on a leaf whatever the tree's depth."""

    left: npt.NDArray[np.int32]
    right: npt.NDArray[np.int32]
    feature: npt.NDArray[np.int32]
    threshold: npt.NDArray[np.float64]
    leaf_p: npt.NDArray[np.float64]  # P(fall) at the node (used at leaves)
    roots: npt.NDArray[np.int32]
    depth: int
    n_features: int
    # Both children of node i at 2i and 2i + 1: one gather per level instead of two and a
    # select (a third of the walk's time for one window).
    _kids: npt.NDArray[np.intp] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.left)
        if not (
            len(self.right) == len(self.feature) == len(self.threshold) == len(self.leaf_p) == n
        ):
            raise InvalidInput("forest arrays differ in length")
        if n == 0 or len(self.roots) == 0 or self.depth < 0:
            raise InvalidInput("empty forest")
        for a in (self.left, self.right, self.roots):
            if a.min() < 0 or a.max() >= n:
                raise InvalidInput("forest node index out of range")
        if self.feature.min() < 0 or self.feature.max() >= self.n_features:
            raise InvalidInput("forest feature index out of range")
        if not np.all((self.leaf_p >= 0) & (self.leaf_p <= 1)):
            raise InvalidInput("forest leaf probabilities outside 0-1")
        kids = np.empty(2 * n, dtype=np.intp)
        kids[0::2], kids[1::2] = self.left, self.right
        object.__setattr__(self, "_kids", kids)

    def proba(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """P(fall) for a feature matrix ``(n, n_features)``, as ``predict_proba[:, 1]``."""
        # sklearn compares float32 features with float64 thresholds; so do we, for parity.
        X = np.asarray(x, dtype=np.float32).astype(np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise InvalidInput(f"features must be (n, {self.n_features})")
        flat = X.ravel()
        offsets = (np.arange(len(X)) * self.n_features)[:, None]
        node = np.broadcast_to(self.roots.astype(np.intp), (len(X), len(self.roots)))
        for _ in range(self.depth):
            go_left = flat.take(offsets + self.feature.take(node)) <= self.threshold.take(node)
            node = self._kids.take(2 * node + 1 - go_left)
        out: npt.NDArray[np.float64] = self.leaf_p[node].mean(axis=1)
        return out


def export_forest(model: Any) -> Forest:
    """A fitted binary ``RandomForestClassifier`` (classes ``[0, 1]``) as a :class:`Forest`."""
    if list(model.classes_) != [0, 1]:
        raise InvalidInput("export_forest: classes must be [0, 1]")
    lefts, rights, feats, thrs, ps, roots = [], [], [], [], [], []
    offset = 0
    depth = 0
    for est in model.estimators_:
        t = est.tree_
        n = t.node_count
        leaf = t.children_left < 0
        idx = np.arange(n)
        lefts.append(np.where(leaf, idx, t.children_left) + offset)
        rights.append(np.where(leaf, idx, t.children_right) + offset)
        feats.append(np.where(leaf, 0, t.feature))
        thrs.append(np.where(leaf, np.inf, t.threshold))
        v = t.value[:, 0, :]
        ps.append(v[:, 1] / v.sum(axis=1))
        roots.append(offset)
        offset += n
        depth = max(depth, int(t.max_depth))
    return Forest(
        left=np.concatenate(lefts).astype(np.int32),
        right=np.concatenate(rights).astype(np.int32),
        feature=np.concatenate(feats).astype(np.int32),
        threshold=np.concatenate(thrs).astype(np.float64),
        leaf_p=np.concatenate(ps).astype(np.float64),
        roots=np.array(roots, dtype=np.int32),
        depth=depth,
        n_features=int(model.n_features_in_),
    )
