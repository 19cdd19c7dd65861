"""The generator's misfit: x = G(w) + r, r ~ N(0, tau^2 I) per pixel, integrated out of the pixel
likelihood (issue 25).

The paper's model says the clean image is exactly G(w).  A real image is not: the bundled
generator cannot reproduce many real garments even where they are observed, and every interval
inherits that overconfidence.  Adding a residual image r with independent N(0, tau^2) pixels and
keeping the Gaussian pixel likelihood y = A x + n, n ~ N(0, sigma^2 I) on the observed entries,
r integrates out exactly for any *linear* corruption A (in-painting masks, super-resolution, blur,
compressed sensing):

    y_obs | w  ~  N(A_obs G(w),  S),    S = sigma^2 I + tau^2 A_obs A_obs^T.

- Masks (in-painting, denoising): A_obs A_obs^T = I on the observed pixels, so S is diagonal and
  every observed pixel simply has variance sigma^2 + tau^2.
- Super-resolution, blur, compressed sensing: A A^T is not diagonal (neighbouring outputs share
  input pixels).  ``MisfitPixelLikelihood`` is still exact: it diagonalises A_obs A_obs^T = U L U^T
  once (eigh, float64) and scores the rotated residual U^T (y - A G(w)), whose entries are
  independent N(0, sigma^2 + tau^2 l_i); the rotation is orthogonal, so its density equals the
  multivariate normal's (no approximation).

The clean image's predictive draws are G(w) + r with r drawn from its exact conditional given
the observation (``conditional_residual``, Matheron's rule): r = r0 + tau^2 A^T S^-1 (y - A(G(w) + r0) - n0)
with r0 ~ N(0, tau^2 I), n0 ~ N(0, sigma^2 I).  For a mask this leaves hidden pixels at
N(0, tau^2) and shrinks observed ones to tau^2 / (sigma^2 + tau^2) of their residual.

The clean image's MAP is G(w*) + E[r | y, w*] (``point_images``; ``MAPResult.reconstruction``): with sigma
and tau fixed, profiling r out of the joint log density leaves the marginal's quadratic form in w, so the joint
mode of (w, r) is the marginal's w* with r at its conditional mean.  G(w*) alone is the generator's best image;
the residual's mean brings back what the generator misses where it is observed (for a mask, each observed
pixel's residual shrinks to sigma^2 / (sigma^2 + tau^2) of G(w*)'s; hidden pixels stay G(w*)'s).

tau may be a number, ``"learn"`` (site ``"misfit_scale"``, prior HalfNormal(0.25) on [-1, 1]
images) or a ``LatentParameter``; predictive draws need fixed sigma and tau (fix a learnt tau at
its estimate).  MAP, VI, the full-rank posterior and NUTS keep their cost: the likelihood is one
(m x m) rotation per evaluation at most (m = 64 for x4 SR of 32x32 images), none for masks.
"""

from __future__ import annotations

import copy

import pyro
import pyro.distributions as dist
import torch

from brgm_pyro.corruptions.base import Corruption
from brgm_pyro.corruptions.latent import LatentParameter

from .likelihoods import NoiseLevel
from .noise import PIXEL_NOISE_SITE

MISFIT_SITE = "misfit_scale"


def misfit_prior(scale: float = 0.25) -> dist.Distribution:
    """tau ~ HalfNormal(scale) (default 0.25 on [-1, 1] images: 95% below 0.49)."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return dist.HalfNormal(scale)


def _check_fixed_linear(op: Corruption, image_shape: tuple[int, int, int]) -> None:
    """``ValueError`` unless ``op`` (float64) has no latent parameters and is linear (checked on two random
    images: f(0) = 0 and f(a x + y) = a f(x) + f(y))."""
    if op.latent_parameters():
        raise ValueError(f"the misfit term needs a fixed operator; {op.describe()} has latent parameters "
                         f"{sorted(op.latent_parameters())}")
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(1, *image_shape, generator=g, dtype=torch.float64) for _ in range(2))
    zero = op(torch.zeros_like(x))
    lhs, rhs = op(2.5 * x + y).reshape(-1), 2.5 * op(x).reshape(-1) + op(y).reshape(-1)
    tol = 1e-8 * (1 + float(rhs.abs().max()))
    if float(zero.abs().max()) > tol or float((lhs - rhs).abs().max()) > tol:
        raise ValueError(f"the misfit term is integrated out for linear corruptions only; {op.describe()} "
                         "is not linear (f(a x + y) != a f(x) + f(y))")


@torch.no_grad()
def misfit_applies(corruption: Corruption, image_shape: tuple[int, int, int]) -> bool:
    """Whether the misfit term can be integrated out for ``corruption``: linear, with fixed parameters."""
    try:
        _check_fixed_linear(copy.deepcopy(corruption).cpu().double(), image_shape)
    except ValueError:
        return False
    return True


@torch.no_grad()
def operator_matrix(corruption: Corruption, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """The matrix A (outputs, pixels), float64, of a linear corruption: its response to unit images.

    Raises ``ValueError`` for a corruption with latent parameters (A would change with them) or
    one that is not linear (``misfit_applies``)."""
    op = copy.deepcopy(corruption).cpu().double()  # the caller's operator is left as it is
    _check_fixed_linear(op, image_shape)
    n = int(torch.tensor(image_shape).prod())
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *image_shape)
    return op(basis).reshape(n, -1).T.contiguous()


class MisfitPixelLikelihood(NoiseLevel):
    """The pixel likelihood with the generator's misfit r ~ N(0, tau^2 I) integrated out:
    y_obs ~ N(A_obs G(w), sigma^2 I + tau^2 A_obs A_obs^T) (module docstring).

    Built with ``from_corruption(corruption, image_shape, sigma, tau)``.  ``sigma``: as for
    ``PixelLikelihood`` (number, "learn", ``LatentParameter``); ``tau``: number, "learn" (site
    ``"misfit_scale"``) or ``LatentParameter``.  Site ``"obs_pixel"`` as the plain likelihood's.
    """

    def __init__(self, A: torch.Tensor, observed: torch.Tensor, sigma: float | str | LatentParameter,
                 tau: float | str | LatentParameter, site: str = "obs_pixel") -> None:
        self._set_sigma(sigma, PIXEL_NOISE_SITE)
        self.site = site
        if isinstance(tau, str):
            if tau != "learn":
                raise ValueError(f"tau (misfit scale) must be a positive number, 'learn' or a LatentParameter, "
                                 f"got {tau!r}")
            tau = LatentParameter(misfit_prior(), name=MISFIT_SITE)
        if isinstance(tau, LatentParameter):
            self.tau, self.tau_prior, self.tau_site = None, tau, tau.site(MISFIT_SITE)
        else:
            tau = float(tau)
            if not (tau > 0 and tau < float("inf")):
                raise ValueError(f"tau (misfit scale) must be a positive finite number, got {tau}")
            self.tau, self.tau_prior, self.tau_site = tau, None, None
        A = torch.as_tensor(A, dtype=torch.float64)
        observed = torch.as_tensor(observed, dtype=torch.bool).reshape(-1)
        if A.ndim != 2 or observed.numel() != A.shape[0]:
            raise ValueError(f"A must be (outputs, pixels) with one observed flag per output; got A "
                             f"{tuple(A.shape)} and {observed.numel()} flags")
        self.A, self.observed = A, observed
        A_obs = A[observed]
        gram = A_obs @ A_obs.T
        off = gram - torch.diag(gram.diagonal())
        self.diagonal = bool(off.abs().max() <= 1e-9 * (1 + float(gram.diagonal().abs().max())))
        if self.diagonal:
            self.eigenvalues, self.rotation = gram.diagonal().clone(), None
        else:
            self.eigenvalues, self.rotation = torch.linalg.eigh(gram)
            self.eigenvalues = self.eigenvalues.clamp_min(0)

    @classmethod
    def from_corruption(cls, corruption: Corruption, image_shape: tuple[int, int, int],
                        sigma: float | str | LatentParameter, tau: float | str | LatentParameter,
                        site: str = "obs_pixel") -> "MisfitPixelLikelihood":
        """A and the observed outputs from the corruption (``operator_matrix``, ``observation_mask``)."""
        A = operator_matrix(corruption, image_shape)
        mask = corruption.observation_mask(image_shape)
        observed = torch.ones(A.shape[0], dtype=torch.bool) if mask is None else mask.reshape(-1).cpu() > 0
        return cls(A, observed, sigma, tau, site)

    def with_pixel_noise(self, sigma: float | str | LatentParameter) -> "MisfitPixelLikelihood":
        """The same likelihood (operator, misfit scale) with another sigma_pixel (``learn_noise``)."""
        other = copy.copy(self)
        other._set_sigma(sigma, PIXEL_NOISE_SITE)
        return other

    def latent_parameters(self) -> dict[str, LatentParameter]:
        out = super().latent_parameters()
        if self.tau_prior is not None:
            out[self.tau_site] = self.tau_prior
        return out

    def _tau(self) -> float | torch.Tensor:
        if self.tau_prior is None:
            return self.tau
        tau = pyro.sample(self.tau_site, self.tau_prior.prior)
        return tau.reshape(*tau.shape, 1) if tau.ndim else tau

    def _flat_observed(self, values: torch.Tensor) -> torch.Tensor:
        """(..., C', H', W') -> (..., m): the observed entries."""
        flat = values.reshape(*values.shape[:-3], -1)
        return flat[..., self.observed.to(flat.device)]

    def variances(self, sigma: float | torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
        """sigma^2 + tau^2 l_i: the variances of the (rotated) observed residual, (m,) or (..., m)."""
        lam = self.eigenvalues
        if isinstance(sigma, torch.Tensor) or isinstance(tau, torch.Tensor):
            ref = sigma if isinstance(sigma, torch.Tensor) else tau
            lam = lam.to(ref)
        return sigma ** 2 + tau ** 2 * lam

    def __call__(self, corrupted: torch.Tensor, observation: torch.Tensor, mask: torch.Tensor | None) -> None:
        sigma = self._sigma(1)
        tau = self._tau()
        mean, obs = self._flat_observed(corrupted), self._flat_observed(observation)
        if self.rotation is not None:
            U = self.rotation.to(mean)
            mean, obs = mean @ U, obs @ U  # U^T (.) for row vectors: orthogonal, unit Jacobian
        scale = self.variances(sigma, tau).to(mean).sqrt()
        pyro.sample(self.site, dist.Normal(mean, scale).to_event(1), obs=obs)

    def gauss_newton(self, jacobian: torch.Tensor) -> torch.Tensor:
        """J^T S^-1 J for the Jacobian J (m, d) of the observed outputs (rows in flat order), the
        likelihood's share of the Laplace approximation's precision.  Fixed sigma and tau only."""
        if self.sigma is None or self.tau is None:
            raise ValueError("the Laplace approximation with a misfit term needs fixed sigma_pixel and misfit scale")
        J = jacobian.double()
        inv = 1 / self.variances(self.sigma, self.tau).to(J.device)
        if self.rotation is not None:
            J = self.rotation.to(J.device).T @ J
        return J.T @ (J * inv[:, None])

    def _solve(self, innovation: torch.Tensor, sigma: float | torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
        """S^-1 innovation for innovations (..., m) of the observed outputs (float64)."""
        variances = self.variances(sigma, tau).to(innovation)
        if self.rotation is None:
            return innovation / variances
        U = self.rotation.to(innovation)
        return ((innovation @ U) / variances) @ U.T

    def _fixed_scales(self, sigma: float | torch.Tensor | None,
                      tau: float | torch.Tensor | None) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        sigma = self.sigma if sigma is None else sigma
        tau = self.tau if tau is None else tau
        if sigma is None or tau is None:
            raise ValueError("the misfit's conditional needs values of sigma_pixel and the misfit scale; pass the "
                             "estimates of learnt ones (e.g. MAP's parameters) or fix them and rebuild the model")
        return sigma, tau

    @torch.no_grad()
    def conditional_mean_residual(self, generated: torch.Tensor, observation: torch.Tensor,
                                  sigma: float | torch.Tensor | None = None,
                                  tau: float | torch.Tensor | None = None) -> torch.Tensor:
        """E[r | y, w] = tau^2 A_obs^T S^-1 (y - A_obs G(w)) for images G(w) ``generated`` (..., C, H, W) and the
        observation (C', H', W') or (B, C', H', W').  ``sigma`` / ``tau``: values for learnt scales (a number,
        or one per image of ``generated``'s image axis, (B,)); the likelihood's fixed values otherwise.

        r is Gaussian given (y, w), so this is also its mode: with sigma and tau given, the joint MAP of (w, r)
        is (w*, E[r | y, w*]) where w* maximises the marginal model -- profiling r out of
        |y - A(G(w) + r)|^2 / sigma^2 + |r|^2 / tau^2 leaves (y - A G(w))^T S^-1 (y - A G(w)), the marginal's
        quadratic form, and the marginal's log-determinant does not depend on w."""
        sigma, tau = self._fixed_scales(sigma, tau)
        shape = generated.shape
        x = generated.reshape(*shape[:-3], -1).double()
        sigma, tau = (v.double().reshape(*v.shape, 1).to(x.device) if isinstance(v, torch.Tensor) and v.ndim else
                      (float(v) if isinstance(v, torch.Tensor) else v) for v in (sigma, tau))
        A_obs = self.A[self.observed].to(x.device)
        innovation = self._flat_observed(observation).double().to(x.device) - x @ A_obs.T  # (..., m)
        r = tau ** 2 * self._solve(innovation, sigma, tau) @ A_obs
        return r.reshape(shape).to(generated.dtype)

    @torch.no_grad()
    def conditional_residual_variance(self) -> torch.Tensor:
        """diag Cov[r | y, w] = tau^2 - tau^4 diag(A_obs^T S^-1 A_obs), (pixels,) float64: the misfit's
        conditional variance per pixel, the same for every w and y (r and y are jointly Gaussian given w).
        For a mask: tau^2 on hidden pixels, sigma^2 tau^2 / (sigma^2 + tau^2) on observed ones.  Fixed sigma
        and tau only."""
        if self.sigma is None or self.tau is None:
            raise ValueError("the misfit's conditional variance needs fixed sigma_pixel and misfit scale")
        sigma, tau = self.sigma, self.tau
        A_obs = self.A[self.observed]
        B = A_obs if self.rotation is None else self.rotation.T @ A_obs  # rows: independent rotated outputs
        explained = (B.square() / self.variances(sigma, tau)[:, None]).sum(0)
        return (tau ** 2 - tau ** 4 * explained).clamp_min(0)

    @torch.no_grad()
    def conditional_residual(self, generated: torch.Tensor, observation: torch.Tensor,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws of r | y, w (exact; Matheron's rule) for images G(w) ``generated`` (..., C, H, W)
        and the observation (C', H', W') (or (B, C', H', W') broadcasting against ``generated``'s
        image axis); the clean image's predictive draw is ``generated + r``.  Fixed sigma and tau only."""
        if self.sigma is None or self.tau is None:
            raise ValueError("predictive draws of the misfit need fixed sigma_pixel and misfit scale; fix a learnt "
                             "value at its estimate (e.g. MAP's parameters) and rebuild the model")
        sigma, tau = self.sigma, self.tau
        shape = generated.shape
        x = generated.reshape(*shape[:-3], -1).double()
        A_obs = self.A[self.observed].to(x.device)
        y = self._flat_observed(observation).double()
        r0 = tau * torch.randn(x.shape, generator=generator, dtype=torch.float64).to(x.device)
        n0 = sigma * torch.randn((*x.shape[:-1], A_obs.shape[0]), generator=generator,
                                 dtype=torch.float64).to(x.device)
        innovation = y - (x + r0) @ A_obs.T - n0  # (..., m)
        r = r0 + tau ** 2 * self._solve(innovation, sigma, tau) @ A_obs
        return r.reshape(shape).to(generated.dtype)


def misfit_likelihood(model):
    """The model's likelihood with a misfit term (the capability ``conditional_residual``, e.g. a
    ``MisfitPixelLikelihood``), or None (the paper's model)."""
    found = [lik for lik in getattr(model, "likelihoods", ()) if callable(getattr(lik, "conditional_residual", None))]
    if len(found) > 1:
        raise ValueError("a model with more than one misfit likelihood")
    return found[0] if found else None


def predictive_images(model, generated: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The clean image's posterior predictive draws: ``generated`` (G(w), (n, C, H, W) or
    (n, B, C, H, W) for a batched model) plus r | y, w when the model has a misfit term;
    ``generated`` itself otherwise."""
    lik = misfit_likelihood(model)
    if lik is None:
        return generated
    observation = model.observation.to(generated.device)
    return generated + lik.conditional_residual(generated, observation, generator)


def conditional_residual_variance(model) -> torch.Tensor | None:
    """Var[r | y, w] per pixel (pixels,) float64 for a model with a misfit term (the same for every w); None
    without one."""
    lik = misfit_likelihood(model)
    return None if lik is None else lik.conditional_residual_variance()


def point_images(model, generated: torch.Tensor, parameters: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The clean image's point estimate at fixed w: G(w) + E[r | y, w] when the model has a misfit term (for
    MAP's w*, the joint MAP of (w, r): ``MisfitPixelLikelihood.conditional_mean_residual``); ``generated`` itself
    otherwise.  ``parameters``: site -> estimate (MAP's ``parameters``) for a learnt sigma_pixel or misfit scale."""
    lik = misfit_likelihood(model)
    if lik is None:
        return generated
    parameters = parameters or {}
    sigma = parameters.get(lik.sigma_site) if lik.sigma is None else None
    tau = parameters.get(lik.tau_site) if lik.tau is None else None
    observation = model.observation.to(generated.device)
    return generated + lik.conditional_mean_residual(generated, observation, sigma, tau)
