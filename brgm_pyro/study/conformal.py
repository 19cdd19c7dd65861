"""Split conformal calibration of the pixel intervals on real images (issue 25): conformal risk
control (Angelopoulos, Bates, Fisch, Lei & Schuster, 2022) of the interval scale s.

What is exchangeable: *images*.  The calibration images and a new image are i.i.d. draws (truth,
noise) from the same source; the pixels of one image are not exchangeable with each other (they
share the image's fit), so no pixel-level guarantee is claimed.  For image i and scale s let

    L_i(s) = the fraction of its unknown pixels that the central level-(1 - alpha) interval of the
             s-widened posterior (N(mu, s^2 Sigma) in latent space, ``brgm_pyro.inference.widening.widen``) misses.

L_i is in [0, 1].  It need not fall monotonically in s (the generator is nonlinear), so it is
replaced by its running maximum from the right on the scale grid, L~_i(s_k) = max_{k' >= k} L_i(s_k'),
which is monotone and >= L_i.  With n calibration images the chosen scale is

    s_hat = min { s_k : n / (n + 1) * mean_i L~_i(s_k) + 1 / (n + 1) <= alpha },

and then, for a new exchangeable image, E[L_{n+1}(s_hat)] <= alpha: **the expected fraction of a
new image's unknown pixels that its (1 - alpha) intervals hold is at least 1 - alpha** (finite
sample, any n; Theorem 1 of conformal risk control with loss bound B = 1).  The price of the
bound at small n: the calibration mean miscoverage must reach (alpha (n + 1) - 1) / n (0.01 for
alpha 0.1 and n 10, 0.07 for n 30, 0.089 for n 100), so small calibration sets give wide
intervals.  When no grid scale meets it the fit says so (``scale`` None).

``plug_in_scale`` is the smallest scale whose calibration mean miscoverage mean_i L~_i(s) is at most
alpha (without the finite-sample correction; the scale of least miscoverage when none is): no
finite-sample guarantee (consistent as n grows), reported next to the guaranteed one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass
class ConformalScale:
    """The conformal-risk-control scale for one setting and the record of how it was fitted."""

    scale: float | None  # None: no scale of the grid meets the bound
    alpha: float
    num_images: int
    scales: list[float]
    mean_loss: list[float]  # mean_i L~_i(s) over the calibration images, per grid scale
    bound: list[float]  # n / (n + 1) * mean L~ + 1 / (n + 1), per grid scale
    plug_in_scale: float  # smallest scale with calibration mean miscoverage <= alpha (no finite-sample guarantee)
    guarantee: str = ("E[fraction of a new exchangeable image's unknown pixels held by its (1 - alpha) "
                      "intervals] >= 1 - alpha (conformal risk control, images exchangeable)")

    def to_dict(self) -> dict:
        return asdict(self)


def monotone_losses(losses: np.ndarray) -> np.ndarray:
    """L~: the running maximum from the right along the scale axis (last axis, scales ascending)."""
    return np.maximum.accumulate(np.asarray(losses, float)[..., ::-1], axis=-1)[..., ::-1]


def conformal_scale(losses: Sequence[Sequence[float]], scales: Sequence[float], alpha: float = 0.1) -> ConformalScale:
    """The conformal-risk-control scale (module docstring) from ``losses`` (images, scales): each
    calibration image's miscoverage fraction of its unknown pixels at each scale (ascending)."""
    L = np.asarray(losses, float)
    s = np.asarray(scales, float)
    if L.ndim != 2 or L.shape[1] != s.size or L.shape[0] < 1:
        raise ValueError(f"losses must be (images, {s.size} scales), got shape {L.shape}")
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if np.any(np.diff(s) <= 0):
        raise ValueError(f"scales must be strictly increasing, got {list(s)}")
    if np.any((L < 0) | (L > 1)) or not np.all(np.isfinite(L)):
        raise ValueError("losses must be fractions in [0, 1]")
    n = L.shape[0]
    mean = monotone_losses(L).mean(0)
    bound = n / (n + 1) * mean + 1 / (n + 1)
    ok = np.nonzero(bound <= alpha + 1e-12)[0]
    chosen = float(s[ok[0]]) if ok.size else None
    reached = np.nonzero(mean <= alpha + 1e-12)[0]  # plug-in: no finite-sample correction
    plug = float(s[reached[0]]) if reached.size else float(s[int(np.argmin(mean))])
    return ConformalScale(chosen, float(alpha), int(n), s.tolist(), mean.tolist(), bound.tolist(), plug)


def required_mean_loss(alpha: float, num_images: int) -> float:
    """The calibration mean miscoverage the bound needs: (alpha (n + 1) - 1) / n (negative: impossible)."""
    return (alpha * (num_images + 1) - 1) / num_images


def min_images_for(alpha: float) -> int:
    """The fewest calibration images for which a guarantee at 1 - alpha is possible at all
    (the mean loss would have to reach 0 at n = ceil(1 / alpha - 1))."""
    return int(math.ceil(1 / alpha - 1)) + 1
