"""Blind versions of the task operators: the corruption with some of its parameters unknown
(``LatentParameter``s with default priors), as the CLI's ``--blind`` builds them.

    blur:   Gaussian blur sigma ~ LogNormal(log 1.5, 0.4)            site "corruption.blur_sigma"
    kernel: super-resolution Gaussian kernel sigma ~ LogNormal(log(factor / 2), 0.4)
                                                                     site "corruption.sr_kernel_sigma"
    shift:  translation dx, dy ~ Normal(0, 1) pixels, before f       sites "corruption.shift_x", "corruption.shift_y"
    gain:   gain ~ LogNormal(0, 0.2), offset ~ Normal(0, 0.2), before f
                                                                     sites "corruption.gain", "corruption.offset"
"""

from __future__ import annotations

import math
from typing import Sequence

import pyro.distributions as dist

from ..choices import BLIND_CHOICES
from .base import Corruption
from .blur import Blur
from .compose import Compose
from .intensity import Intensity
from .latent import LatentParameter
from .shift import Shift
from .super_resolution import SuperResolution



def blur_sigma_prior(median: float = 1.5, log_scale: float = 0.4) -> dist.Distribution:
    return dist.LogNormal(math.log(median), log_scale)


def make_blind(corruption: Corruption, blind: Sequence[str]) -> Corruption:
    """``corruption`` with the parameters named in ``blind`` (``BLIND_CHOICES``) made latent.

    "blur" needs a Gaussian ``Blur``; "kernel" a ``SuperResolution`` with a Gaussian kernel;
    "shift" and "gain" put a latent ``Shift`` / ``Intensity`` in front of any operator.
    """
    unknown = [b for b in blind if b not in BLIND_CHOICES]
    if unknown:
        raise ValueError(f"unknown blind parameter(s) {unknown}; choose from {', '.join(BLIND_CHOICES)}")
    if len(set(blind)) != len(blind):
        raise ValueError(f"each blind parameter may be given once, got {list(blind)}")
    op = corruption
    if "blur" in blind:
        if not isinstance(op, Blur) or not getattr(op, "name", "").startswith("gaussian"):
            raise ValueError(f"--blind blur needs the Gaussian blur task, not {op.describe()}")
        op = Blur.gaussian(LatentParameter(blur_sigma_prior()))
    if "kernel" in blind:
        if not isinstance(op, SuperResolution) or op.kernel_name != "gaussian":
            raise ValueError(f"--blind kernel needs super-resolution with the Gaussian kernel (--kernel gaussian), "
                             f"not {op.describe()}")
        op = SuperResolution(op.factor, "gaussian", LatentParameter(dist.LogNormal(math.log(op.factor / 2), 0.4)))
    front = []
    if "shift" in blind:
        front.append(Shift(LatentParameter(dist.Normal(0.0, 1.0)), LatentParameter(dist.Normal(0.0, 1.0))))
    if "gain" in blind:
        front.append(Intensity(LatentParameter(dist.LogNormal(0.0, 0.2)), LatentParameter(dist.Normal(0.0, 0.2))))
    return Compose(*front, op) if front else op
