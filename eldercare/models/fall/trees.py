"""A random forest as plain arrays, and a numpy walker that scores with them.

The serving process never unpickles anything and never imports scikit-learn: a forest is
exported once at training time (:func:`export_forest`, the only function here that touches
sklearn objects) to five flat arrays saved in an ``.npz`` read with
``allow_pickle=False`` (design §4.2). :meth:`Forest.proba` walks every tree of every window
at once, one level per step, so a single window costs ~tens of microseconds rather than
the ~1.4 ms of ``predict_proba`` (design §4.3). Training checks parity with
``predict_proba`` (tests/test_fall_model.py).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from eldercare.errors import InvalidInput

_KEYS: Final = ("left", "right", "feature", "threshold", "leaf_p", "roots", "depth")


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

    def proba(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """P(fall) for a feature matrix ``(n, n_features)``, as ``predict_proba[:, 1]``."""
        # sklearn compares float32 features with float64 thresholds; so do we, for parity.
        X = np.asarray(x, dtype=np.float32).astype(np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise InvalidInput(f"features must be (n, {self.n_features})")
        rows = np.arange(len(X))[:, None]
        node = np.broadcast_to(self.roots, (len(X), len(self.roots)))
        for _ in range(self.depth):
            go_left = X[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        out: npt.NDArray[np.float64] = self.leaf_p[node].mean(axis=1)
        return out

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            left=self.left,
            right=self.right,
            feature=self.feature,
            threshold=self.threshold,
            leaf_p=self.leaf_p,
            roots=self.roots,
            depth=np.array(self.depth),
            n_features=np.array(self.n_features),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Forest:
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                a = {k: z[k] for k in (*_KEYS, "n_features")}
        except (ValueError, KeyError, OSError) as exc:
            raise InvalidInput(f"not a forest bundle: {exc}") from exc
        return cls(
            left=a["left"].astype(np.int32),
            right=a["right"].astype(np.int32),
            feature=a["feature"].astype(np.int32),
            threshold=a["threshold"].astype(np.float64),
            leaf_p=a["leaf_p"].astype(np.float64),
            roots=a["roots"].astype(np.int32),
            depth=int(a["depth"]),
            n_features=int(a["n_features"]),
        )

    def save(self, path: Path) -> str:
        """Write the bundle; returns its sha256 for the manifest."""
        raw = self.to_bytes()
        path.write_bytes(raw)
        return hashlib.sha256(raw).hexdigest()

    @classmethod
    def load(cls, path: Path, *, sha256: str) -> Forest:
        """Read a bundle only if its bytes match the sha256 the manifest recorded."""
        raw = path.read_bytes()
        got = hashlib.sha256(raw).hexdigest()
        if got != sha256:
            raise InvalidInput(f"{path.name}: sha256 {got} does not match the manifest")
        return cls.from_bytes(raw)


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
