"""Features of a wrist accelerometer window, vectorised over a batch of windows.

A window is ``(N, 3)`` samples in g with gravity at :data:`HZ` (``synth.N`` = 4 s at
50 Hz); a batch is ``(n, N, 3)``. The features follow the multiphase fall model
(pre-impact descent, impact, rest, orientation change; Palmerini et al. 2020) plus the
magnitude statistics of threshold detectors (Bourke 2007, Kangas 2008), design §2.4.

Windows that arrive at another rate (the protocol lets a device choose ``imu.hz``) are
resampled by :func:`resample` first; a window at 25 Hz carries nothing above 12.5 Hz, so
its top FFT band is empty: one of the ways platform data differs from the training data.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

from eldercare.models.fall import synth
from eldercare.models.fall.synth import HZ, N

FloatArray = npt.NDArray[np.float64]

# Order matters: it is the column order of every feature matrix and of the exported trees.
FEATURES: Final = (
    "mag_max",
    "mag_min",
    "mag_mean",
    "mag_std",
    "mag_p90",
    "pre_impact_min",  # min |a| in the second before the peak: the descent
    "peak_minus_pre_min",
    "post_mean",  # |a| from 0.2 s after the peak: the rest
    "post_std",
    "orientation_cos",  # cosine between the mean gravity of the first and last second
    "max_jerk",  # g/s
    "time_below_0_6g",  # s
    "band_0_1hz",  # share of |a| variance in each band
    "band_1_3hz",
    "band_3_8hz",
    "band_8_25hz",
    "std_x",
    "std_y",
    "std_z",
    "peak_at",  # position of the peak in the window, 0-1
    "last_s_std",
)
N_FEATURES: Final = len(FEATURES)
_SECOND: Final = HZ
_SETTLE: Final = HZ // 5  # 0.2 s of ringing after the impact
_BANDS: Final = ((0.0, 1.0), (1.0, 3.0), (3.0, 8.0), (8.0, 25.01))
_FREQS: Final = np.fft.rfftfreq(N, d=1.0 / HZ)
_BAND_MASKS: Final = np.stack([(lo < _FREQS) & (hi >= _FREQS) for lo, hi in _BANDS]).T.astype(
    np.float64
)
# The 90th percentile by partition (np.percentile's "linear" rule, without its overhead,
# which is a tenth of a single window's features).
_P90: Final = 0.9 * (N - 1)
_P90_LO: Final = int(_P90)
_P90_W: Final = _P90 - _P90_LO


def resample(acc: npt.ArrayLike, hz: float, *, out_hz: int = HZ) -> FloatArray:
    """``acc`` ``(m, 3)`` at ``hz`` linearly interpolated to ``out_hz``; the last sample
    stays the last sample (windows are aligned on their end, the time the device sent)."""
    a = np.asarray(acc, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3 or len(a) == 0:
        raise ValueError("acc must be a non-empty (m, 3) array")
    if hz <= 0:
        raise ValueError("hz must be positive")
    if hz == out_hz:
        return a
    duration = (len(a) - 1) / hz
    n_out = int(np.floor(duration * out_hz)) + 1
    t_in = np.arange(len(a)) / hz
    t_out = duration - np.arange(n_out)[::-1] / out_hz
    out: FloatArray = np.stack([np.interp(t_out, t_in, a[:, k]) for k in range(3)], axis=1)
    return out


@cache
def _rate_matrix(hz: int) -> FloatArray:
    # Linear interpolation from hz samples aligned on the window's end back to the HZ grid,
    # as a (N, m) matrix: what stitching a device's window at ``hz`` does to it.
    m = round(synth.WINDOW_S * hz)
    t_in = (np.arange(m) - (m - 1)) / hz
    t_out = (np.arange(N) - (N - 1)) / HZ
    eye = np.eye(m)
    return np.stack([np.interp(t_out, t_in, eye[:, j]) for j in range(m)], axis=1)


def at_rate(windows: FloatArray, hz: int) -> FloatArray:
    """Windows ``(n, N, 3)`` as a device sampling at ``hz`` would deliver them after the
    platform resamples to :data:`HZ`: every ``HZ/hz``-th sample, ending on the last one,
    linearly interpolated back. Training on both rates keeps the model from depending on
    content above the wearable's Nyquist frequency (12.5 Hz at the simulator's 25 Hz)."""
    if hz == HZ:
        return windows
    if hz <= 0 or HZ % hz:
        raise ValueError(f"hz must divide {HZ}")
    step = HZ // hz
    sub = windows[:, step - 1 :: step]
    out: FloatArray = np.einsum("tm,nmk->ntk", _rate_matrix(hz), sub)
    return out


def fit_window(acc: FloatArray) -> FloatArray:
    """The last :data:`N` samples of ``acc``, or ``acc`` front-padded with its first sample
    (a device that has streamed less than a window so far: "as it was before")."""
    if len(acc) >= N:
        return acc[-N:]
    pad = np.repeat(acc[:1], N - len(acc), axis=0)
    return np.concatenate([pad, acc])


def extract(windows: FloatArray) -> FloatArray:
    """Feature matrix ``(n, N_FEATURES)`` for windows ``(n, N, 3)``."""
    w = np.asarray(windows, dtype=np.float64)
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3 or w.shape[1:] != (N, 3):
        raise ValueError(f"windows must be (n, {N}, 3), got {w.shape}")
    n = len(w)
    if n == 0:
        return np.zeros((0, N_FEATURES))
    mag = np.sqrt(np.einsum("ntk,ntk->nt", w, w))
    idx = np.arange(N)[None, :]
    peak = mag.argmax(axis=1)
    peak_val = mag[np.arange(n), peak]
    pk = peak[:, None]

    pre = (idx >= pk - _SECOND) & (idx < pk)
    pre_min = np.where(pre.any(axis=1), np.where(pre, mag, np.inf).min(axis=1), peak_val)

    post = idx > pk + _SETTLE
    cnt = post.sum(axis=1)
    has_post = cnt > 0
    safe = np.maximum(cnt, 1)
    post_mean = np.where(post, mag, 0).sum(axis=1) / safe
    post_var = np.where(post, (mag - post_mean[:, None]) ** 2, 0).sum(axis=1) / safe
    # No rest in the window yet (peak at the very end): the last sample stands in.
    post_mean = np.where(has_post, post_mean, mag[:, -1])
    post_std = np.where(has_post, np.sqrt(post_var), 0.0)

    g_first = w[:, :_SECOND].mean(axis=1)
    g_last = w[:, -_SECOND:].mean(axis=1)
    denom = np.linalg.norm(g_first, axis=1) * np.linalg.norm(g_last, axis=1)
    cos = np.einsum("nk,nk->n", g_first, g_last) / np.maximum(denom, 1e-9)

    jerk = np.linalg.norm(np.diff(w, axis=1), axis=2).max(axis=1) * HZ
    below = (mag < 0.6).sum(axis=1) / HZ

    spec = np.abs(np.fft.rfft(mag - mag.mean(axis=1, keepdims=True), axis=1)) ** 2
    total = np.maximum(spec[:, 1:].sum(axis=1), 1e-12)
    bands = (spec @ _BAND_MASKS) / total[:, None]
    part = np.partition(mag, (_P90_LO, _P90_LO + 1), axis=1)
    p90 = part[:, _P90_LO] + _P90_W * (part[:, _P90_LO + 1] - part[:, _P90_LO])

    out = np.column_stack(
        [
            peak_val,
            mag.min(axis=1),
            mag.mean(axis=1),
            mag.std(axis=1),
            p90,
            pre_min,
            peak_val - pre_min,
            post_mean,
            post_std,
            np.clip(cos, -1, 1),
            jerk,
            below,
            bands,
            w.std(axis=1),
            peak / (N - 1),
            mag[:, -_SECOND:].std(axis=1),
        ]
    )
    return out


def sliding(acc: FloatArray, *, hop: int = N // 2) -> FloatArray:
    """Windows ``(k, N, 3)`` over a recording ``(m, 3)`` at :data:`HZ`, hop in samples
    (default 2 s, design §2.4's 4 s windows with a 2 s hop)."""
    if len(acc) < N:
        return np.zeros((0, N, 3))
    starts = np.arange(0, len(acc) - N + 1, hop)
    view = np.lib.stride_tricks.sliding_window_view(acc, (N, 3))[:, 0]
    out: FloatArray = view[starts]
    return out
