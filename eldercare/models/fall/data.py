"""Real, non-fall wrist motion: seglearn's smartwatch data set, read without running
arbitrary pickle code.

``seglearn==1.2.5`` (BSD-3, a dev/ML dependency pinned in pyproject.toml) ships
``seglearn/data/watch_dataset.npy``, the file its own ``seglearn.datasets.load_watch()``
reads: 140 recordings of 10 people doing shoulder-physiotherapy exercises with a watch on
the wrist, 50 Hz, ``[ax, ay, az, wx, wy, wz]`` with the acceleration in g including
gravity (Burns et al., arXiv:1802.01489). Nobody falls in it: every window is a negative.

The file is a pickled dict inside ``.npy``. ``np.load(allow_pickle=True)`` would run
whatever the pickle says, so :func:`load_watch` parses the ``.npy`` header itself and
unpickles with an allow-list of the four globals the file needs (numpy's array
reconstruction, ``numpy.dtype``, ``numpy.ndarray`` and ``_codecs.encode``); anything else
is refused. We do not import seglearn: only its data file is used, found by the package's
own location without executing it.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from eldercare.errors import ConfigError, InvalidInput
from eldercare.models.fall.features import sliding
from eldercare.models.fall.synth import HZ, N

SEGLEARN_PIN: Final = "seglearn==1.2.5"
_ALLOWED: Final = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("_codecs", "encode"),
    }
)


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise InvalidInput(f"watch data: refusing to unpickle {module}.{name}")
        if module == "numpy.core.multiarray":
            # numpy 2 moved it; the old name still resolves with a DeprecationWarning.
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def watch_path() -> Path:
    """Where seglearn's installed wheel keeps the watch data (without importing seglearn)."""
    spec = importlib.util.find_spec("seglearn")
    if spec is None or spec.origin is None:
        raise ConfigError(f"seglearn is not installed: pip install '{SEGLEARN_PIN}'")
    path = Path(spec.origin).parent / "data" / "watch_dataset.npy"
    if not path.is_file():
        raise ConfigError(f"seglearn is installed but has no {path.name}; need {SEGLEARN_PIN}")
    return path


def _unpickle_npy(raw: bytes) -> Any:
    f = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            _shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            _shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except ValueError as exc:
        raise InvalidInput(f"watch data: not an .npy file ({exc})") from exc
    if dtype != np.dtype(object):
        raise InvalidInput("watch data: expected a pickled object array")
    try:
        return _AllowListUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as exc:
        raise InvalidInput(f"watch data: unreadable pickle ({exc})") from exc


@dataclass(frozen=True, slots=True)
class Recording:
    subject: int
    exercise: str
    acc: npt.NDArray[np.float64]  # (m, 3) in g with gravity, 50 Hz

    @property
    def hours(self) -> float:
        return len(self.acc) / HZ / 3600


def load_watch(path: Path | None = None) -> list[Recording]:
    """The 140 recordings (accelerometer only: the platform's wearables send no gyro)."""
    obj = _unpickle_npy((path or watch_path()).read_bytes())
    data = obj.item() if isinstance(obj, np.ndarray) else obj
    if not isinstance(data, dict) or not {"X", "y", "subject", "y_labels"} <= data.keys():
        raise InvalidInput("watch data: not the seglearn watch dict")
    labels = list(data["y_labels"])
    out = []
    for x, y, subj in zip(data["X"], data["y"], data["subject"], strict=True):
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] < 3:
            raise InvalidInput("watch data: a recording is not (m, >=3)")
        out.append(Recording(int(subj), str(labels[int(y)]), arr[:, :3].copy()))
    return out


@dataclass(frozen=True, slots=True)
class RealWindows:
    """Sliding windows over real recordings, all negatives, with whom they came from."""

    windows: npt.NDArray[np.float64]  # (k, N, 3)
    subjects: npt.NDArray[np.int32]
    recording: npt.NDArray[np.int32]  # index into the recordings, for event merging
    start_s: npt.NDArray[np.float64]  # where each window starts in its recording
    hours: float  # recorded time the windows cover (whole recordings)


def real_windows(recs: list[Recording], *, hop: int = N // 2) -> RealWindows:
    ws, subj, rec, start = [], [], [], []
    for i, r in enumerate(recs):
        w = sliding(r.acc, hop=hop)
        ws.append(w)
        subj.append(np.full(len(w), r.subject, dtype=np.int32))
        rec.append(np.full(len(w), i, dtype=np.int32))
        start.append(np.arange(len(w)) * hop / HZ)
    return RealWindows(
        windows=np.concatenate(ws) if ws else np.zeros((0, N, 3)),
        subjects=np.concatenate(subj) if subj else np.zeros(0, np.int32),
        recording=np.concatenate(rec) if rec else np.zeros(0, np.int32),
        start_s=np.concatenate(start) if start else np.zeros(0),
        hours=sum(r.hours for r in recs),
    )
