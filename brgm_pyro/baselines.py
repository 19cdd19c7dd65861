"""Classical reconstructions that BRGM is compared against (the paper's Table 1 setting).

- ``bicubic_upsample``: bicubic interpolation of a low-resolution image.
- ``mean_fill``: observed pixels kept, holes filled with a mean image.
- ``tv_reconstruction`` / ``wavelet_reconstruction``: DeepInverse's proximal gradient descent on
  argmin_x 1/2 ||m . (A(x) - y)||^2 + lambda R(x), with R the isotropic total variation or the l1 norm
  of the wavelet detail coefficients, run on the project's own operator A (``corruption_physics``).
  They need the optional DeepInverse extra: ``pip install -e ".[baselines]"``.
- ``TUNED_WEIGHTS``: the lambda of each task, tuned on Fashion-MNIST *training* images by
  ``benchmarks/baselines.py`` (see ``docs/baselines.md``).

Images are (B, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn.functional as F

from .corruptions.base import Corruption

INSTALL_HINT = 'pip install -e ".[baselines]"'


class MissingBaselineDependency(ImportError):
    """Raised when the TV / wavelet baselines run without DeepInverse (or its wavelet backend)."""


def require_deepinv(wavelets: bool = False) -> ModuleType:
    """The ``deepinv`` module, or ``MissingBaselineDependency`` with a one-line install hint.
    ``wavelets``: also require ``ptwt`` (DeepInverse's wavelet transforms)."""
    needed = ["deepinv"] + (["ptwt"] if wavelets else [])
    for name in needed:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise MissingBaselineDependency(
                f"the TV and wavelet baselines need {name} (DeepInverse), which is not installed: {INSTALL_HINT}"
            ) from err
    return importlib.import_module("deepinv")


def baselines_available(wavelets: bool = True) -> bool:
    """True when ``require_deepinv(wavelets)`` would succeed."""
    try:
        require_deepinv(wavelets)
    except MissingBaselineDependency:
        return False
    return True


def bicubic_upsample(low: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, factor*h, factor*w) by bicubic interpolation, clamped to [-1, 1]."""
    if low.ndim != 4:
        raise ValueError(f"expected (B, C, h, w) images, got shape {tuple(low.shape)}")
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    return F.interpolate(low, scale_factor=factor, mode="bicubic", align_corners=False).clamp(-1, 1)


def mean_fill(observation: torch.Tensor, mask: torch.Tensor, mean_image: torch.Tensor) -> torch.Tensor:
    """Keep observed pixels (mask 1) and fill the others from ``mean_image`` (C, H, W)."""
    if mask.shape[-2:] != observation.shape[-2:] or mean_image.shape[-2:] != observation.shape[-2:]:
        raise ValueError(
            f"shapes differ: observation {tuple(observation.shape)}, mask {tuple(mask.shape)}, "
            f"mean image {tuple(mean_image.shape)}"
        )
    return mask * observation + (1 - mask) * mean_image


def check_linear(corruption: Corruption, image_shape: tuple[int, int, int], tol: float = 1e-5) -> None:
    """Raise ``ValueError`` unless A(a u + b v) = a A(u) + b A(v) on random u, v (the proximal
    baselines need a linear operator; a latent-parameter or intensity corruption is not one)."""
    if corruption.latent_parameters():
        raise ValueError(f"{corruption.describe()} has unknown (latent) parameters; the classical baselines need "
                         "a fixed linear operator")
    g = torch.Generator().manual_seed(0)
    u, v = (torch.rand(2, *image_shape, generator=g) * 2 - 1 for _ in range(2))
    with torch.no_grad():
        lhs = corruption(0.3 * u - 1.7 * v)
        rhs = 0.3 * corruption(u) - 1.7 * corruption(v)
    scale = max(rhs.abs().max().item(), 1e-12)
    if (lhs - rhs).abs().max().item() > tol * scale:
        raise ValueError(f"{corruption.describe()} is not linear; the classical baselines need a linear operator")


def corruption_physics(corruption: Corruption, image_shape: tuple[int, int, int]):
    """The project's operator as a DeepInverse ``LinearPhysics``: A(x) = m . f(x) with m the
    corruption's observation mask (1 where observed), and A^T by automatic differentiation.

    So DeepInverse's solvers fit exactly the values that BRGM's likelihood counts.
    """
    dinv = require_deepinv()
    check_linear(corruption, image_shape)
    out_shape = corruption.output_shape(tuple(image_shape))
    mask = corruption.observation_mask(tuple(image_shape))

    def forward(x: torch.Tensor, **_: object) -> torch.Tensor:
        y = corruption(x)
        return y if mask is None else y * mask.to(y)

    def adjoint(y: torch.Tensor, **_: object) -> torch.Tensor:
        if tuple(y.shape[1:]) != tuple(out_shape):
            raise ValueError(f"A^T expects observations of shape (B, {', '.join(map(str, out_shape))}), "
                             f"got {tuple(y.shape)}")
        with torch.enable_grad():
            x = torch.zeros(y.shape[0], *image_shape, dtype=y.dtype, device=y.device, requires_grad=True)
            (grad,) = torch.autograd.grad(forward(x), x, grad_outputs=y)
        return grad

    return dinv.physics.LinearPhysics(A=forward, A_adjoint=adjoint, img_size=tuple(image_shape))


def operator_norm_squared(corruption: Corruption, image_shape: tuple[int, int, int], iterations: int = 100) -> float:
    """||A||^2 (the largest eigenvalue of A^T A) by power iteration, with A as in ``corruption_physics``."""
    physics = corruption_physics(corruption, image_shape)
    x = torch.randn(1, *image_shape, generator=torch.Generator().manual_seed(0))
    value = 0.0
    for _ in range(iterations):
        x = x / x.norm()
        x = physics.A_adjoint(physics.A(x))
        value = x.norm().item()
    return value


@dataclass(frozen=True)
class BaselineSetting:
    """A classical reconstruction's settings: weight lambda, PGD iterations, and the wavelet
    (name, decomposition level) for the wavelet prior."""

    weight: float
    iterations: int = 300
    wavelet: str = "db4"
    level: int = 2


def _pgd(prior, corruption: Corruption, observation: torch.Tensor, image_shape: tuple[int, int, int],
         setting: BaselineSetting, init: torch.Tensor | None) -> torch.Tensor:
    dinv = require_deepinv()
    expected = (observation.shape[0], *corruption.output_shape(tuple(image_shape)))
    if observation.ndim != 4 or tuple(observation.shape) != expected:
        raise ValueError(f"observation must have shape {expected} for {corruption.describe()}, "
                         f"got {tuple(observation.shape)}")
    if not setting.weight >= 0:
        raise ValueError(f"the regularisation weight must be >= 0, got {setting.weight}")
    physics = corruption_physics(corruption, image_shape)
    mask = corruption.observation_mask(tuple(image_shape))
    y = observation if mask is None else observation * mask.to(observation)
    stepsize = 1.0 / operator_norm_squared(corruption, image_shape)  # 1/L for the data term's gradient
    solver = dinv.optim.PGD(
        data_fidelity=dinv.optim.L2(), prior=prior, lambda_reg=setting.weight, stepsize=stepsize,
        max_iter=setting.iterations, early_stop=True, thres_conv=1e-6,
        custom_init=None if init is None else (lambda *_: init.clone()),
    )
    with torch.no_grad():
        x = solver(y, physics)
    return x.clamp(-1, 1)


def tv_reconstruction(corruption: Corruption, observation: torch.Tensor, image_shape: tuple[int, int, int],
                      setting: BaselineSetting, init: torch.Tensor | None = None) -> torch.Tensor:
    """argmin_x 1/2 ||m . (f(x) - y)||^2 + lambda TV(x) (isotropic TV) by DeepInverse's PGD, clamped
    to [-1, 1].  Its TV prox is an inner primal-dual solver, warm-started from the previous step's,
    stopped at a relative change of 1e-5 or 50 iterations.  ``init`` defaults to A^T y."""
    dinv = require_deepinv()
    return _pgd(dinv.optim.TVPrior(def_crit=1e-5, n_it_max=50), corruption, observation, image_shape, setting, init)


def wavelet_reconstruction(corruption: Corruption, observation: torch.Tensor, image_shape: tuple[int, int, int],
                           setting: BaselineSetting, init: torch.Tensor | None = None) -> torch.Tensor:
    """argmin_x 1/2 ||m . (f(x) - y)||^2 + lambda ||Psi x||_1 (detail coefficients of the
    ``setting.wavelet`` transform, ``setting.level`` levels, zero padding) by DeepInverse's PGD with
    soft thresholding, clamped to [-1, 1].  ``init`` defaults to A^T y."""
    dinv = require_deepinv(wavelets=True)

    class WaveletL1(dinv.optim.WaveletPrior):
        """DeepInverse 0.5.0's ``WaveletPrior.prox`` thresholds at ``ths * gamma`` with ``ths`` 0.1 unless
        given, and its PGD does not give it: that would make the objective's weight 0.1 lambda.  Here
        ``ths`` is 1, so the soft threshold is lambda * stepsize, the prox of lambda ||Psi x||_1."""

        def prox(self, x: torch.Tensor, *args: object, gamma: float = 1.0, **kwargs: object) -> torch.Tensor:
            return super().prox(x, ths=1.0, gamma=gamma)

    prior = WaveletL1(level=setting.level, wv=setting.wavelet, p=1)
    return _pgd(prior, corruption, observation, image_shape, setting, init)


# lambda per task and prior, tuned by benchmarks/baselines.py on 10 Fashion-MNIST training images
# (observation noise sigma 0.05; SR x4 bicubic-antialias: best mean PSNR; in-painting, standard masks 0
# and 1: best mean RMSE of the hidden region); grids, scores and the held-out evaluation are in
# benchmarks/results/baselines/baselines.md and docs/baselines.md.
TUNED_WEIGHTS: dict[str, dict[str, BaselineSetting]] = {
    "super-resolution": {"tv": BaselineSetting(5e-3, iterations=200),
                         "wavelet": BaselineSetting(3e-6, iterations=200, wavelet="haar", level=3)},
    "inpainting": {"tv": BaselineSetting(3e-3, iterations=200),
                   "wavelet": BaselineSetting(1e-4, iterations=200, wavelet="db4", level=2)},
}
