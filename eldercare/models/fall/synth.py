"""A physics-based generator of synthetic wrist accelerometer windows: falls and the
activities that look like falls. Everything it makes is synthetic; nothing it makes is
evidence about real falls (design ../shared/design/models.md §3.3).

A window is ``WINDOW_S`` seconds at ``HZ`` of ``[x, y, z]`` in g *with* gravity, the units
of the protocol's ``imu.acc`` and of seglearn's watch data. The accelerometer reads
specific force: at rest ``+1 g`` along the sensor's "up" direction, ~0 g in free fall. So
a sample is ``support(t) * up(t) + motion(t) + noise``, where ``up(t)`` is the unit vector
pointing up in the sensor frame (rotated by the wrist's movement) and ``support(t)`` the
share of gravity the body is resisting (1 standing still, < 1 while falling).

A fall follows the multiphase model (pre-fall, falling, impact, resting, recovery) of
Palmerini et al., Sensors 2020 20(22):6479, which the FARSEEING consensus describes.
Parameter sources, and which ones are assumptions (**A**):

- descent 300–800 ms with ``|a|`` dipping to 0.15–0.75 g: the pre-impact minimum that
  Bourke et al. 2007 (PubMed 17101272) and Kangas et al. 2008 (Gait & Posture 28(2):285)
  threshold on; the exact spread is **A**.
- wrist impact peak lognormal, median 3.5 g, clipped at 8 g: Kangas 2008 reports wrist
  impacts well above the 2–3 g thresholds that waist sensors use; the distribution is **A**.
- impact decay 40–160 ms with 8–15 Hz ringing: **A** (soft tissue and floor, no source).
- rest afterwards in an orientation rotated 45–180°, sigma ~0.01 g: **A**, from "lying
  after the fall" in the multiphase model.
- recovery (getting up) in ~15 % of falls: **A**; Bagalà et al., PLoS ONE 2012
  7(5):e37062 notes that real falls often lack long rests, which is why it matters.
- subjects: step frequency 1.3–2.1 Hz (older adults walk slower), vigour, wrist mounting
  offset and sensor noise 0.01–0.03 g: **A**.
- hard negatives (sitting down hard, lying down, clapping or hitting a table, dropping the
  device, stumbling and recovering, gestures, walking): the activities the literature
  (Bagalà 2012; González-Cañete & Casilari, Sensors 2021 21(6):2254) names as false-alarm
  sources for wrist devices; their shapes and amplitudes are **A**.

:data:`CONFIG_A` is what models train on. :data:`CONFIG_SOFT` is a *held-out* generator
configuration (softer impacts, shallower and slower descents, smaller rotations, more
recoveries) that no model sees in training: the drop in sensitivity from A to SOFT shows
how much a model leans on the generator's assumptions. It does not measure the
sim-to-real gap; real falls may differ more.

Pure numpy, seeded: the same ``(config, seed)`` gives the same windows, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

HZ: Final = 50
WINDOW_S: Final = 4.0
N: Final = int(HZ * WINDOW_S)
CLIP_G: Final = 8.0

FloatArray = npt.NDArray[np.float64]

FALL: Final = "fall"
# The negatives, in the order the generator draws them (weights in GeneratorConfig).
NEGATIVES: Final = (
    "walk",
    "still",
    "gesture",
    "sit_down_hard",
    "lie_down",
    "clap_or_hit",
    "drop_device",
    "stumble_recover",
)


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """The physics ranges of one generator configuration (all in g, seconds, degrees)."""

    name: str
    descent_s: tuple[float, float] = (0.3, 0.8)
    descent_min_g: tuple[float, float] = (0.15, 0.75)
    impact_median_g: float = 3.5
    impact_sigma: float = 0.35  # of log(peak)
    impact_min_g: float = 1.8
    decay_s: tuple[float, float] = (0.04, 0.16)
    rotation_deg: tuple[float, float] = (45.0, 180.0)
    p_recovery: float = 0.15
    # Where the impact lands in the window: sliding windows see it anywhere with enough
    # of a descent before it.
    impact_at_s: tuple[float, float] = (1.0, 3.6)
    negative_weights: tuple[float, ...] = (3, 2, 3, 2, 1.5, 1.5, 1, 1.5)

    def __post_init__(self) -> None:
        pairs = (self.descent_s, self.descent_min_g, self.decay_s, self.rotation_deg)
        if any(lo > hi for lo, hi in pairs) or not 0 <= self.p_recovery <= 1:
            raise ValueError(f"generator config {self.name!r}: a range is reversed")
        if len(self.negative_weights) != len(NEGATIVES) or min(self.negative_weights) < 0:
            raise ValueError(f"generator config {self.name!r}: one weight per negative")
        lo, hi = self.impact_at_s
        if not self.descent_s[1] <= lo <= hi <= WINDOW_S:
            raise ValueError(f"generator config {self.name!r}: impact must fit the window")


CONFIG_A: Final = GeneratorConfig(name="A")
# Held out: softer, slower, "slumping" falls (design §3.3 step 3).
CONFIG_SOFT: Final = GeneratorConfig(
    name="soft",
    descent_s=(0.6, 1.2),
    descent_min_g=(0.5, 0.85),
    impact_median_g=1.8,
    impact_sigma=0.15,
    impact_min_g=1.4,
    decay_s=(0.08, 0.25),
    rotation_deg=(30.0, 120.0),
    p_recovery=0.3,
    impact_at_s=(1.3, 3.6),
)
CONFIGS: Final = {c.name: c for c in (CONFIG_A, CONFIG_SOFT)}


@dataclass(frozen=True, slots=True)
class Subject:
    """One synthetic person: how they move and how their watch sits."""

    step_hz: float
    vigour: float
    up0: tuple[float, float, float]  # "up" in the sensor frame with the arm at rest
    swing_axis: tuple[float, float, float]
    noise_g: float


@dataclass(frozen=True, slots=True)
class SynthSet:
    """Windows ``(n, N, 3)`` in g, labels (1 = fall), subject ids and activity names."""

    windows: FloatArray
    labels: npt.NDArray[np.int8]
    subjects: npt.NDArray[np.int32]
    activities: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.windows.shape != (n, N, 3) or len(self.subjects) != n:
            raise ValueError("windows, labels and subjects must have one row per window")
        if self.activities and len(self.activities) != n:
            raise ValueError("one activity name per window")


# ---------------------------------------------------------------- geometry


def _unit(v: FloatArray) -> FloatArray:
    out: FloatArray = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return out


def _rotate(v: FloatArray, axis: FloatArray, angle: FloatArray) -> FloatArray:
    """Rodrigues: ``v`` (3,) or (T, 3) rotated about unit ``axis`` (3,) by ``angle`` (T,)."""
    c = np.cos(angle)[:, None]
    s = np.sin(angle)[:, None]
    v = np.broadcast_to(v, (len(angle), 3))
    kxv = np.cross(axis, v)
    kdv = (v @ axis)[:, None]
    out: FloatArray = v * c + kxv * s + axis * kdv * (1 - c)
    return out


def _perpendicular(rng: np.random.Generator, v: FloatArray) -> FloatArray:
    r = rng.normal(size=3)
    return _unit(r - (r @ v) * v)


def _random_unit(rng: np.random.Generator) -> FloatArray:
    return _unit(rng.normal(size=3))


def _smoothstep(x: FloatArray) -> FloatArray:
    x = np.clip(x, 0.0, 1.0)
    out: FloatArray = x * x * (3 - 2 * x)
    return out


def _time() -> FloatArray:
    return np.arange(N, dtype=np.float64) / HZ


# ---------------------------------------------------------------- subjects and activities


def draw_subject(rng: np.random.Generator) -> Subject:
    # The watch's "up" at rest: forearm roughly horizontal or hanging, rotated per person.
    base = _unit(np.array([0.0, 0.0, 1.0]))
    tilt = np.deg2rad(rng.uniform(0, 70))
    up0 = _rotate(base, _perpendicular(rng, base), np.array([tilt]))[0]
    return Subject(
        step_hz=float(rng.uniform(1.3, 2.1)),
        vigour=float(rng.uniform(0.5, 1.5)),
        up0=(float(up0[0]), float(up0[1]), float(up0[2])),
        swing_axis=tuple(float(x) for x in _perpendicular(rng, up0)),  # type: ignore[arg-type]
        noise_g=float(rng.uniform(0.01, 0.03)),
    )


def _activity(
    rng: np.random.Generator, s: Subject, kind: str, t: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``(up(t), motion(t))`` for a background activity over times ``t``."""
    up0 = np.array(s.up0)
    axis = np.array(s.swing_axis)
    n = len(t)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "walk":
        # Arm swing at half the step frequency; vertical bounce at the step frequency.
        amp = np.deg2rad(rng.uniform(10, 35) * s.vigour)
        up = _rotate(up0, axis, amp * np.sin(np.pi * s.step_hz * t + phase))
        bounce = rng.uniform(0.1, 0.3) * s.vigour * np.sin(2 * np.pi * s.step_hz * t + phase)
        motion = up * bounce[:, None]
        swing = _unit(np.cross(axis, up0))
        motion += swing * (0.15 * s.vigour * np.cos(np.pi * s.step_hz * t + phase))[:, None]
        return up, motion
    if kind == "gesture":
        # A few smooth reaches and turns of the wrist (0.2-1.5 Hz), 0.1-0.8 g.
        angle = np.zeros(n)
        motion = np.zeros((n, 3))
        for _ in range(rng.integers(1, 4)):
            f = rng.uniform(0.2, 1.5)
            angle += np.deg2rad(rng.uniform(10, 60)) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))
            d = _random_unit(rng)
            g = rng.uniform(0.1, 0.8) * s.vigour
            motion += (
                d * (g * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t + rng.uniform(0, 6)))[:, None]
            )
        return _rotate(up0, _perpendicular(rng, up0), angle), motion
    # still: sitting or standing with a little postural sway
    sway = np.deg2rad(rng.uniform(0.5, 3)) * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + phase)
    return _rotate(up0, axis, sway), np.zeros((n, 3))


def _impact(
    rng: np.random.Generator,
    t: FloatArray,
    at: float,
    peak: float,
    decay: float,
    toward: FloatArray | None = None,
) -> FloatArray:
    """A damped, ringing impulse (n, 3) peaking at ``at``: the ``|a|`` spike of a hit.
    Landing decelerates upwards, so a landing's impulse points roughly along ``toward``
    (the sensor's "up" at that moment); a clap or a knock points anywhere."""
    d = _random_unit(rng) if toward is None else _unit(toward + 0.6 * rng.normal(size=3))
    dt = t - at
    ring_hz = rng.uniform(8, 15)
    env = np.where(dt >= 0, np.exp(-np.clip(dt, 0, None) / decay), 0.0)
    # A 20 ms rise so the peak is not a single-sample step.
    rise = np.where((dt < 0) & (dt > -0.02), 1 + dt / 0.02, 0.0)
    shape = env * np.cos(2 * np.pi * ring_hz * np.clip(dt, 0, None)) + rise
    out: FloatArray = d * (peak * shape)[:, None]
    return out


def _finish(
    rng: np.random.Generator, s: Subject, support: FloatArray, up: FloatArray, motion: FloatArray
) -> FloatArray:
    acc: FloatArray = support[:, None] * up + motion + rng.normal(0, s.noise_g, size=(N, 3))
    out: FloatArray = np.round(np.clip(acc, -CLIP_G, CLIP_G), 3).astype(np.float64)
    return out


def fall_window(rng: np.random.Generator, s: Subject, cfg: GeneratorConfig) -> FloatArray:
    t = _time()
    impact_at = rng.uniform(*cfg.impact_at_s)
    descent = rng.uniform(*cfg.descent_s)
    start = impact_at - descent
    pre = str(rng.choice(("walk", "still", "gesture"), p=(0.5, 0.25, 0.25)))
    up_pre, motion = _activity(rng, s, pre, t)
    # Falling: support dips (half-cosine) while "up" rotates to the final orientation.
    in_descent = (t >= start) & (t < impact_at)
    u = np.clip((t - start) / descent, 0, 1)
    depth = 1 - rng.uniform(*cfg.descent_min_g)
    support = 1 - depth * np.where(in_descent, np.sin(np.pi * u) ** 0.7, 0.0)
    angle = np.deg2rad(rng.uniform(*cfg.rotation_deg))
    up_start = up_pre[min(int(np.searchsorted(t, start)), N - 1)]
    axis = _perpendicular(rng, up_start)
    turned = _rotate(up_start, axis, angle * _smoothstep(u))
    up = np.where((t >= start)[:, None], turned, up_pre)
    # Pre-fall motion fades out during the descent; nothing but rest after the impact.
    motion = motion * (1 - _smoothstep(u))[:, None]
    peak = max(
        cfg.impact_min_g, float(rng.lognormal(np.log(cfg.impact_median_g), cfg.impact_sigma))
    )
    k_hit = min(int(np.searchsorted(t, impact_at)), N - 1)
    motion = motion + _impact(rng, t, impact_at, peak, rng.uniform(*cfg.decay_s), up[k_hit])
    if rng.random() < cfg.p_recovery:
        # Getting up: after 0.5-2 s of rest, back towards the starting orientation.
        rec = impact_at + rng.uniform(0.5, 2.0)
        v = _smoothstep((t - rec) / rng.uniform(0.8, 1.5))
        back = _rotate(up_start, axis, angle * (1 - v))
        up = np.where((t >= rec)[:, None], back, up)
        motion = motion + (
            (t >= rec) * 0.2 * s.vigour * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
        )[:, None] * _random_unit(rng)
    return _finish(rng, s, support, up, motion)


def negative_window(rng: np.random.Generator, s: Subject, kind: str) -> FloatArray:
    t = _time()
    support = np.ones(N)
    if kind in ("walk", "still", "gesture"):
        up, motion = _activity(rng, s, kind, t)
        return _finish(rng, s, support, up, motion)
    at = rng.uniform(1.0, 3.6)
    pre = "walk" if kind == "stumble_recover" else str(rng.choice(("walk", "still", "gesture")))
    up, motion = _activity(rng, s, pre, t)
    if kind == "sit_down_hard":
        # A short partial unloading, a 1.5-3 g bump into the chair, little rotation.
        dur = rng.uniform(0.3, 0.7)
        u = np.clip((t - (at - dur)) / dur, 0, 1)
        support = 1 - rng.uniform(0.1, 0.4) * np.where((u > 0) & (u < 1), np.sin(np.pi * u), 0.0)
        turn = _rotate(up[0], _perpendicular(rng, up[0]), np.deg2rad(rng.uniform(0, 25)) * u)
        up = np.where((t >= at - dur)[:, None], turn, up)
        motion = motion * (1 - _smoothstep(u))[:, None]
        motion += _impact(rng, t, at, rng.uniform(1.5, 3.0), rng.uniform(0.05, 0.15), up[-1])
    elif kind == "lie_down":
        # A large, slow rotation with no impact.
        dur = rng.uniform(1.5, 3.0)
        start = rng.uniform(0.2, max(0.3, WINDOW_S - dur))
        u = (t - start) / dur
        turn = _rotate(
            up[0], _perpendicular(rng, up[0]), np.deg2rad(rng.uniform(60, 110)) * _smoothstep(u)
        )
        up = np.where((t >= start)[:, None], turn, up)
        motion = motion * (1 - _smoothstep(u))[:, None]
    elif kind == "clap_or_hit":
        for _ in range(rng.integers(1, 4)):
            hit = float(np.clip(at + rng.uniform(-0.8, 0.8), 0.1, WINDOW_S - 0.1))
            motion += _impact(rng, t, hit, rng.uniform(3.0, 6.0), rng.uniform(0.015, 0.04))
    elif kind == "drop_device":
        # True free fall from 0.2-1.2 m (t = sqrt(2h/g)), a hard hit, bounces, then the
        # watch lies flat on the floor.
        fall_s = float(np.sqrt(2 * rng.uniform(0.2, 1.2) / 9.81))
        start = at - fall_s
        free = (t >= start) & (t < at)
        support = np.where(free, rng.uniform(0.0, 0.05), 1.0)
        flat = np.array([0.0, 0.0, rng.choice((-1.0, 1.0))])
        up = np.where((t >= at)[:, None], flat, up)
        motion = np.where((t >= start)[:, None], 0.0, motion)
        motion += _impact(rng, t, at, rng.uniform(6.0, 9.0), rng.uniform(0.01, 0.04), flat)
        bounce = at + rng.uniform(0.1, 0.3)
        if bounce < WINDOW_S:
            motion += _impact(rng, t, bounce, rng.uniform(1.5, 4.0), 0.02)
    elif kind == "stumble_recover":
        dur = rng.uniform(0.15, 0.4)
        u = np.clip((t - (at - dur)) / dur, 0, 1)
        support = 1 - rng.uniform(0.2, 0.5) * np.where((u > 0) & (u < 1), np.sin(np.pi * u), 0.0)
        k_hit = min(int(np.searchsorted(t, at)), N - 1)
        motion += _impact(rng, t, at, rng.uniform(1.5, 2.5), rng.uniform(0.05, 0.12), up[k_hit])
        # A brief wobble of the wrist, then walking goes on.
        wobble = np.deg2rad(rng.uniform(5, 30)) * np.exp(-np.clip(t - at, 0, None) / 0.5)
        up = _rotate(up, _perpendicular(rng, up[0]), np.where(t >= at, wobble, 0.0))
    else:
        raise ValueError(f"unknown activity {kind!r}")
    return _finish(rng, s, support, up, motion)


def generate(
    cfg: GeneratorConfig,
    seed: int,
    *,
    n_subjects: int,
    falls_per_subject: int,
    negatives_per_subject: int,
    first_subject: int = 0,
) -> SynthSet:
    """Windows for ``n_subjects`` synthetic people, deterministic in ``(cfg, seed)``."""
    if n_subjects < 1 or falls_per_subject < 0 or negatives_per_subject < 0:
        raise ValueError("need at least one subject and no negative counts")
    rng = np.random.default_rng([seed, sum(map(ord, cfg.name))])
    weights = np.array(cfg.negative_weights, dtype=np.float64)
    weights /= weights.sum()
    windows: list[FloatArray] = []
    labels: list[int] = []
    subjects: list[int] = []
    names: list[str] = []
    for i in range(n_subjects):
        s = draw_subject(rng)
        for _ in range(falls_per_subject):
            windows.append(fall_window(rng, s, cfg))
            labels.append(1)
            names.append(FALL)
        for kind in rng.choice(NEGATIVES, size=negatives_per_subject, p=weights):
            windows.append(negative_window(rng, s, str(kind)))
            labels.append(0)
            names.append(str(kind))
        subjects.extend([first_subject + i] * (falls_per_subject + negatives_per_subject))
    return SynthSet(
        windows=np.stack(windows) if windows else np.zeros((0, N, 3)),
        labels=np.array(labels, dtype=np.int8),
        subjects=np.array(subjects, dtype=np.int32),
        activities=tuple(names),
    )
