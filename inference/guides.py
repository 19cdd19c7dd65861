"""Variational families for w, all with one contract (``LatentGuide``).

- ``GaussianGuide``: the paper's q(w) = N(mu_v, softplus(rho_v)^2) (Sec. 2.4), a diagonal
  Gaussian over the prior's latent site, mu_v started at the prior mean (w_avg) and sigma_v at
  the prior's standard deviation (``model.prior.init_scale()``).
- ``SharedGaussianGuide``: one Gaussian w shared by all layers (the W space) for a W+ prior.
- ``MultivariateGaussianGuide``: a full-rank (``"fullrank"``) or low-rank (``"lowrank"``)
  Gaussian over all of W+ jointly, so it can represent the correlations between layers and
  dimensions that the posterior of an under-determined problem has.
- ``FlowGuide``: inverse autoregressive flow layers on top of a diagonal Gaussian (``"flow"``).
- ``AutoGuideAdapter``: Pyro's ``AutoDelta`` (``"delta"``) in the same contract;
  ``CallableGuide``: any user's callable guide.

The contract: ``guide()`` is the Pyro guide; ``median()`` gives {site: value}; ``freeze()`` gives
q detached from Pyro's param store (a ``LatentDistribution``, or an ``ImageStack`` of them for a
batched model) with ``sample(k)`` / ``sample_with_log_prob(k)`` and ``mean``; ``sample_latents(n)``
draws n latents; ``sigma()`` is the per-element standard deviation the Eq. 8 penalty applies to
(None where it does not apply); ``seed_noise(seeds)`` gives each image its own noise stream.

Batched models (an observation (B, C, H, W) under ``pyro.plate("images", B)``) get per-image
parameters (a leading image axis of size B) and per-image noise: the guides draw their standard
normal noise from one ``torch.Generator`` per image (``StandardNormalNoise``), so image b of a
batched fit sees the same noise as a single-image fit with image b's seed.  The guides draw that
noise as an auxiliary site ``{site}_noise`` and score w = T(noise) by a ``Delta`` whose log
density is log q(w) - log N(noise): their sum is log q(w), as in the plain parameterisation.

When the model has latent sites besides w (a learned noise level, unknown corruption
parameters), the Gaussian guides add an ``AuxiliaryGuide`` factor for them and ``AutoDelta``
covers them by construction (started at the parameters' starting values).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, ContextManager, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.distributions.transforms import AffineAutoregressive, LowerCholeskyAffine
from pyro.infer import Predictive
from pyro.infer.autoguide import AutoDelta
from pyro.infer.autoguide.initialization import init_to_value
from pyro.nn import AutoRegressiveNN
from torch.distributions.transforms import AffineTransform

from brgm_pyro.models.brgm import BRGMModel

from .auxiliary import AuxiliaryGuide


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    """rho with softplus(rho) = x (x > 0)."""
    return x + torch.log(-torch.expm1(-x))


def image_seeds(model: BRGMModel, seed: int | Sequence[int]) -> list[int]:
    """One seed per image of ``model``: ``seed`` for every image, or the given list (one per image)."""
    if isinstance(seed, int):
        return [int(seed)] * model.num_images
    seeds = [int(s) for s in seed]
    if len(seeds) != model.num_images:
        raise ValueError(f"got {len(seeds)} seeds for a model of {model.num_images} image(s); give one per image")
    return seeds


class StandardNormalNoise(dist.TorchDistribution):
    """N(0, I) over ``event_shape``, drawn from one ``torch.Generator`` per image.

    With ``generators=None`` it draws from torch's global generator.  With one generator and no
    image axis, the whole draw comes from it; with ``image_axis`` the last batch dimension
    indexes images and slice b is drawn from ``generators[b]`` (as if alone), so a batched draw
    equals B separate draws seeded the same way.
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, event_shape: torch.Size, generators: Sequence[torch.Generator] | None = None,
                 image_axis: bool = False, batch_shape: torch.Size = torch.Size(),
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        self.generators, self.image_axis = generators, image_axis
        self.dtype, self.device = dtype, torch.device(device)
        super().__init__(torch.Size(batch_shape), torch.Size(event_shape), validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, len(self.event_shape))

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> "StandardNormalNoise":
        return StandardNormalNoise(self.event_shape, self.generators, self.image_axis, torch.Size(batch_shape),
                                   self.dtype, self.device)

    def _draw(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=self.dtype, device=self.device)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        if self.generators is None:
            return self._draw(shape, None)
        if not self.image_axis or len(self.batch_shape) == 0:
            return self._draw(shape, self.generators[0])
        axis = len(shape) - len(self.event_shape) - 1
        if shape[axis] != len(self.generators):
            raise ValueError(f"{shape[axis]} images but {len(self.generators)} noise generators")
        rest = shape[:axis] + shape[axis + 1:]
        return torch.stack([self._draw(rest, g) for g in self.generators], dim=axis)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        log_p = -0.5 * value.square() - 0.5 * math.log(2 * math.pi)
        return _sum_rightmost(log_p, len(self.event_shape))


class LatentDistribution:
    """A fitted q(w) of one image over the latent site, detached from Pyro's param store.

    ``distribution`` is a torch distribution over the flattened latent (event shape (n,));
    ``shape`` is the site's event shape.  ``sample_with_log_prob(k)`` gives k draws in the site's
    shape and their log q; ``log_prob(latents)`` evaluates log q anywhere (Gaussians only: a
    flow's inverse is sequential over the dimensions, ``has_log_prob`` says which);
    ``mean`` is q's mean where known in closed form, else its base point.
    """

    def __init__(self, distribution: torch.distributions.Distribution, shape: torch.Size,
                 mean: torch.Tensor, has_log_prob: bool = True) -> None:
        self.distribution, self.shape = distribution, torch.Size(shape)
        self.mean, self.has_log_prob = mean, has_log_prob

    @torch.no_grad()
    def sample_with_log_prob(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.distribution
        if isinstance(d, torch.distributions.TransformedDistribution):  # forward log-det, no inversion
            x = d.base_dist.sample((k,))
            log_q = d.base_dist.log_prob(x)
            for t in d.transforms:
                y = t(x)
                ladj = t.log_abs_det_jacobian(x, y)
                log_q = log_q - _sum_rightmost(ladj, ladj.ndim - 1)
                x = y
        else:
            x = d.sample((k,))
            log_q = d.log_prob(x)
        return x.reshape(k, *self.shape), log_q

    def sample(self, k: int) -> torch.Tensor:
        return self.sample_with_log_prob(k)[0]

    @torch.no_grad()
    def log_prob(self, latents: torch.Tensor) -> torch.Tensor:
        if not self.has_log_prob:
            raise ValueError("this q has no tractable log density at arbitrary points (a flow); "
                             "use sample_with_log_prob")
        flat = latents.reshape(*latents.shape[: latents.ndim - len(self.shape)], -1)
        return self.distribution.log_prob(flat)

    def images(self) -> list["LatentDistribution"]:
        """The per-image q's: [self] (one image)."""
        return [self]


class ImageStack:
    """The fitted q's of a batched model, one ``LatentDistribution`` per image: draws and means
    get a leading image axis after the draw axis ((k, B, *site shape)); ``images()`` gives the
    per-image q's (each what a single-image fit gives)."""

    def __init__(self, components: Sequence[Any]) -> None:
        if not components:
            raise ValueError("an ImageStack needs at least one image")
        self.components = list(components)
        self.shape = self.components[0].shape
        self.has_log_prob = all(c.has_log_prob for c in self.components)
        if all(hasattr(c, "sample_with_log_prob") for c in self.components):
            self.sample_with_log_prob = self._sample_with_log_prob
        means = [c.mean for c in self.components]
        self.mean = None if any(m is None for m in means) else torch.stack(means)

    def images(self) -> list[LatentDistribution]:
        return list(self.components)

    def _sample_with_log_prob(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [c.sample_with_log_prob(k) for c in self.components]
        return torch.stack([p[0] for p in parts], dim=1), torch.stack([p[1] for p in parts], dim=1)

    def sample(self, k: int) -> torch.Tensor:
        return torch.stack([c.sample(k) for c in self.components], dim=1)

    def log_prob(self, latents: torch.Tensor) -> torch.Tensor:
        """log q_b of ``latents`` (..., B, *site shape), per image: (..., B)."""
        axis = latents.ndim - len(self.shape) - 1
        return torch.stack([c.log_prob(latents.select(axis, b)) for b, c in enumerate(self.components)], dim=-1)


def _sum_rightmost(x: torch.Tensor, dims: int) -> torch.Tensor:
    return x.reshape(*x.shape[: x.ndim - dims], -1).sum(-1) if dims > 0 else x


class LatentGuide:
    """The contract of every guide ``fit_vi`` fits (see the module docstring).

    Subclasses set ``site`` and ``shape`` (the site's event shape for one image) and implement
    ``__call__``, ``median`` and ``_freeze_image``.  ``batched`` / ``num_images`` follow the model.
    """

    site: str
    shape: torch.Size
    penalised: bool = False  # does the sigma_v penalty (Eq. 8) apply to ``sigma()``?

    def _setup_images(self, model: BRGMModel) -> None:
        self.batched, self.num_images = model.batched, model.num_images
        self.generators: list[torch.Generator] | None = None

    def images_plate(self) -> ContextManager:
        """``pyro.plate("images", B, dim=-1)`` for a batched model (as in the model), else nothing."""
        return pyro.plate("images", self.num_images, dim=-1) if self.batched else contextlib.nullcontext()

    def per_image(self, value: torch.Tensor, event_ndim: int, name: str) -> torch.Tensor:
        """``value`` with the leading image axis of a batched model (a single image's value is
        copied to every image); checked against the event shape ``event_ndim`` trailing dims."""
        value = value.detach()
        if not self.batched:
            return value.clone()
        if value.ndim == event_ndim:
            return value.expand(self.num_images, *value.shape).clone()
        if value.ndim == event_ndim + 1 and value.shape[0] == self.num_images:
            return value.clone()
        raise ValueError(f"{name} must have shape {tuple(value.shape[-event_ndim:]) if event_ndim else ()} "
                         f"or ({self.num_images}, ...) for this batch of {self.num_images} images, "
                         f"got {tuple(value.shape)}")

    def seed_noise(self, seeds: Sequence[int] | None) -> None:
        """Draw the noise of image b from a generator seeded ``seeds[b]`` (None: torch's global one)."""
        if seeds is None:
            self.generators = None
            return
        if len(seeds) != self.num_images:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_images} image(s)")
        device = self.device
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def noise(self, event_shape: Sequence[int], like: torch.Tensor, prefix: str = "") -> torch.Tensor:
        """The auxiliary site ``{prefix}{site}_noise`` ~ N(0, I) over ``event_shape`` (per image)."""
        d = StandardNormalNoise(torch.Size(event_shape), self.generators, self.batched,
                                dtype=like.dtype, device=like.device)
        return pyro.sample(prefix + self.site + "_noise", d, infer={"is_auxiliary": True})

    def emit(self, w: torch.Tensor, log_density: torch.Tensor) -> torch.Tensor:
        """The model's site: w with the log density log q(w) - log N(noise) (its batch shape)."""
        event_dim = len(self.shape)
        batch = w.shape[: w.ndim - event_dim]
        return pyro.sample(self.site, dist.Delta(w, log_density=log_density.expand(batch), event_dim=event_dim))

    def __call__(self) -> torch.Tensor:
        raise NotImplementedError

    def median(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def sigma(self) -> torch.Tensor | None:
        return None

    def _freeze_image(self, image: int) -> LatentDistribution:
        raise NotImplementedError

    def freeze(self, image: int | None = None) -> LatentDistribution | ImageStack:
        """The current q, detached (call inside the param-store scope it was fitted in): image
        ``image``'s (a ``LatentDistribution``), or all images (an ``ImageStack`` when batched)."""
        with torch.no_grad():
            if image is not None:
                if not 0 <= image < self.num_images:
                    raise IndexError(f"image {image} of {self.num_images}")
                return self._freeze_image(image)
            if not self.batched:
                return self._freeze_image(0)
            return ImageStack([self._freeze_image(b) for b in range(self.num_images)])

    def sample_latents(self, n: int) -> torch.Tensor:
        """n draws of the latent site, (n, *site shape) or (n, B, *site shape) for a batch."""
        return self.freeze().sample(n)

    def _pick(self, value: torch.Tensor, image: int) -> torch.Tensor:
        return value[image] if self.batched else value


class GaussianGuide(LatentGuide):
    """q(w) = N(mu_v, softplus(rho_v)^2) over the prior's sample site, elementwise independent.

    Params ``mu_v`` and ``rho_v`` live in Pyro's param store (a leading image axis for a batched
    model).  ``sigma()`` gives softplus(rho_v).  ``init_scale`` defaults to the prior's standard
    deviation (``model.prior.init_scale()``); ``penalised=False`` exempts it from the Eq. 8
    penalty (the "normal" guide).
    """

    def __init__(self, model: BRGMModel, init_scale: torch.Tensor | float | None = None, prefix: str = "",
                 penalised: bool = True) -> None:
        self._setup_images(model)
        self.site = model.prior.site
        self.init_loc = model.prior.init_loc().detach().clone()
        self.shape = self.init_loc.shape
        if init_scale is None:
            init_scale = model.prior.init_scale().detach()
        scale = torch.as_tensor(init_scale, dtype=self.init_loc.dtype, device=self.init_loc.device)
        self.init_scale = scale.expand_as(self.init_loc).clone()
        if (self.init_scale <= 0).any():
            raise ValueError("init_scale must be positive")
        self.penalised = penalised
        self.loc_name, self.rho_name = prefix + "mu_v", prefix + "rho_v"
        self.auxiliary = AuxiliaryGuide(model, prefix=prefix + "aux.")  # other latent sites (none in the paper)

    @property
    def device(self) -> torch.device:
        return self.init_loc.device

    def loc(self) -> torch.Tensor:
        return pyro.param(self.loc_name, lambda: self.per_image(self.init_loc, len(self.shape), "init_loc"))

    def sigma(self) -> torch.Tensor:
        return F.softplus(pyro.param(self.rho_name, lambda: inverse_softplus(
            self.per_image(self.init_scale, len(self.shape), "init_scale"))))

    def __call__(self) -> torch.Tensor:
        with self.images_plate():
            loc, sigma = self.loc(), self.sigma()
            eps = self.noise(self.shape, loc)
            w = self.emit(loc + sigma * eps, -_sum_rightmost(sigma.log(), len(self.shape)))
            self.auxiliary()
        return w

    def median(self) -> dict[str, torch.Tensor]:
        return {self.site: self.loc()}

    def _freeze_image(self, image: int) -> LatentDistribution:
        loc, scale = self._pick(self.loc(), image).detach(), self._pick(self.sigma(), image).detach()
        return LatentDistribution(dist.Normal(loc.flatten(), scale.flatten()).to_event(1), loc.shape, loc.clone())


class SharedGaussianGuide(GaussianGuide):
    """One w ~ N(mu_v, softplus(rho_v)^2) of shape (w_dim,) copied to every layer of a W+ site.

    q is supported on the diagonal {w_1 = ... = w_L} of W+, so its ELBO scores only that
    subspace: it is the W-space restriction of the posterior, not a bound on the W+ evidence.
    For a proper W-space model use ``SharedLatentPrior`` with ``GaussianGuide``.  Its frozen q is
    over the shared w ((w_dim,)); its draws are copied to the layers.
    """

    def __init__(self, model: BRGMModel, init_scale: torch.Tensor | float | None = None, prefix: str = "") -> None:
        super().__init__(model, init_scale, prefix)
        if self.init_loc.ndim != 2:
            raise ValueError("SharedGaussianGuide needs a W+ prior site of shape (num_ws, w_dim)")
        self.num_ws = self.init_loc.shape[0]
        self.init_loc, self.init_scale = self.init_loc[0].clone(), self.init_scale[0].clone()
        self.site_shape = self.shape
        self.shape = self.init_loc.shape

    def __call__(self) -> torch.Tensor:
        with self.images_plate():
            loc, sigma = self.loc(), self.sigma()
            shared = loc + sigma * self.noise(self.shape, loc)
            ws = shared.unsqueeze(-2).expand(*shared.shape[:-1], self.num_ws, shared.shape[-1])
            log_density = -sigma.log().sum(-1).expand(ws.shape[:-2])
            w = pyro.sample(self.site, dist.Delta(ws, log_density=log_density, event_dim=2))
            self.auxiliary()
        return w

    def median(self) -> dict[str, torch.Tensor]:
        loc = self.loc()
        return {self.site: loc.unsqueeze(-2).expand(*loc.shape[:-1], self.num_ws, loc.shape[-1])}

    def _freeze_image(self, image: int) -> LatentDistribution:
        return _SharedLatents(super()._freeze_image(image), self.num_ws)


class _SharedLatents:
    """A frozen ``SharedGaussianGuide``: q over the shared w (``shared``), draws copied to the
    W+ layers.  It has no density on W+ (q lives on the diagonal of W+)."""

    has_log_prob = False

    def __init__(self, shared: LatentDistribution, num_ws: int) -> None:
        self.shared, self.num_ws = shared, num_ws
        self.shape = torch.Size((num_ws, *shared.shape))
        self.mean = shared.mean.expand(num_ws, shared.mean.shape[-1])

    def sample(self, k: int) -> torch.Tensor:
        x = self.shared.sample(k)
        return x.unsqueeze(-2).expand(k, self.num_ws, x.shape[-1])

    def images(self) -> list["_SharedLatents"]:
        return [self]


class MultivariateGaussianGuide(LatentGuide):
    """q(w) = N(loc, Sigma) jointly over the whole latent site (all layers of W+).

    Parameterised in the prior's standard units s (``model.prior.init_scale()``, per element):
    w = loc + s * (M z), z ~ N(0, I); or, given ``init_scale_tril`` C (full rank only), in C's
    whitened units: w = loc + C (M z), M = I at the start.  ``rank=None``: M is lower-triangular
    with a softplus diagonal (full rank, n(n+1)/2 parameters); ``rank=r``: M M^T = F F^T + diag(d^2)
    (low rank plus diagonal, n(r+1) parameters).  Starts at ``init_loc`` (default: the prior mean, w_avg on
    every layer; a MAP solution is a better start) with standard deviations ``init_scale``
    (default: the prior's) and no correlations (low rank: a small random F, off the saddle at 0).
    For a batched model every image has its own parameters; ``init_loc`` and ``init_scale_tril``
    may be one image's (shared start) or have a leading image axis.
    """

    def __init__(self, model: BRGMModel, rank: int | None = None, init_loc: torch.Tensor | None = None,
                 init_scale: torch.Tensor | float | None = None, prefix: str = "",
                 init_scale_tril: torch.Tensor | None = None) -> None:
        self._setup_images(model)
        self.site = model.prior.site
        prior_loc = model.prior.init_loc().detach()
        self.shape = prior_loc.shape
        loc = prior_loc if init_loc is None else torch.as_tensor(init_loc).to(prior_loc)
        if loc.shape[loc.ndim - len(self.shape):] != self.shape:
            raise ValueError(f"init_loc must have the latent site's shape {tuple(self.shape)}, got {tuple(loc.shape)}")
        self.init_loc = self.per_image(loc, len(self.shape), "init_loc")
        self.unit = model.prior.init_scale().detach().to(prior_loc).expand(self.shape).flatten().clone()
        scale = (self.unit if init_scale is None
                 else torch.as_tensor(init_scale).to(prior_loc).expand(self.shape).flatten())
        if (scale <= 0).any():
            raise ValueError("init_scale must be positive")
        self.dim = self.unit.numel()
        if rank is not None and not 1 <= rank <= self.dim:
            raise ValueError(f"rank must be between 1 and the latent dimension {self.dim}, got {rank}")
        self.rank = rank
        self.init_rho = self.per_image(inverse_softplus(scale / self.unit), 1, "init_scale")
        self.preconditioner: torch.Tensor | None = None
        if init_scale_tril is not None:  # a full covariance's Cholesky factor C (e.g. the Laplace approximation's)
            if rank is not None:
                raise ValueError("init_scale_tril needs the full-rank guide (rank=None)")
            tril = torch.as_tensor(init_scale_tril).to(prior_loc)
            if tril.shape[-2:] != (self.dim, self.dim) or not (tril.diagonal(dim1=-2, dim2=-1) > 0).all():
                raise ValueError(f"init_scale_tril must be a ({self.dim}, {self.dim}) lower-triangular matrix "
                                 "with a positive diagonal")
            # w = loc + C (M z) with M = I at the start: the fit works in C's whitened coordinates,
            # where the optimiser's per-parameter steps are on the scale of the posterior itself
            self.preconditioner = self.per_image(torch.tril(tril), 2, "init_scale_tril")
            self.init_rho = self.per_image(inverse_softplus(torch.ones(self.dim).to(prior_loc)), 1, "init_scale")
        self.prefix = prefix

    @property
    def device(self) -> torch.device:
        return self.init_loc.device

    def loc(self) -> torch.Tensor:
        return pyro.param(self.prefix + "loc", lambda: self.init_loc.clone())

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(flattened loc, the scale factor, None) for full rank -- w = loc + L z with L
        lower-triangular -- or (loc, W, D) for low rank: w = loc + W z_1 + D z_2."""
        loc = self.loc().flatten(-len(self.shape))
        diag = F.softplus(pyro.param(self.prefix + "rho", lambda: self.init_rho.clone()))
        if self.rank is None:
            off = pyro.param(self.prefix + "tril", lambda: torch.zeros(*diag.shape, self.dim).to(diag))
            tril = torch.tril(off, -1) + torch.diag_embed(diag)
            if self.preconditioner is not None:
                return loc, self.preconditioner @ tril, None
            return loc, self.unit.unsqueeze(-1) * tril, None
        g = torch.Generator().manual_seed(0)
        start = (0.01 * torch.randn(self.dim, self.rank, generator=g)).to(loc)
        factor = pyro.param(self.prefix + "factor",
                            lambda: self.per_image(start, 2, "factor"))
        return loc, self.unit.unsqueeze(-1) * factor, self.unit * diag

    def distribution(self) -> dist.Distribution:
        """q over the flattened latent (event shape (n,); batch shape (B,) for a batched model)."""
        loc, scale, diag = self._factors()
        if diag is None:
            return dist.MultivariateNormal(loc, scale_tril=scale)
        return dist.LowRankMultivariateNormal(loc, scale, diag.square())

    def __call__(self) -> torch.Tensor:
        with self.images_plate():
            loc, scale, diag = self._factors()
            if diag is None:
                z = self.noise((self.dim,), loc)
                flat = loc + (scale @ z.unsqueeze(-1)).squeeze(-1)
                log_density = -scale.diagonal(dim1=-2, dim2=-1).log().sum(-1)
            else:
                z = self.noise((self.rank + self.dim,), loc)
                flat = loc + (scale @ z[..., :self.rank].unsqueeze(-1)).squeeze(-1) + diag * z[..., self.rank:]
                q = dist.LowRankMultivariateNormal(loc, scale, diag.square())
                log_density = q.log_prob(flat) - StandardNormalNoise(z.shape[-1:]).log_prob(z)
            return self.emit(flat.reshape(*flat.shape[:-1], *self.shape), log_density)

    def median(self) -> dict[str, torch.Tensor]:
        return {self.site: self.loc()}

    def _freeze_image(self, image: int) -> LatentDistribution:
        d = self.distribution()
        if self.batched:
            d = (dist.MultivariateNormal(d.loc[image], scale_tril=d.scale_tril[image]) if self.rank is None else
                 dist.LowRankMultivariateNormal(d.loc[image], d.cov_factor[image], d.cov_diag[image]))
        return LatentDistribution(d, self.shape, d.mean.reshape(self.shape).clone())


class FlowGuide(LatentGuide):
    """q(w): z ~ N(0, I), w = loc + s * d * T_K(...T_1(z)), with T_k inverse autoregressive
    (affine) flows (Kingma et al., 2016) on permuted coordinates, s the prior's standard units
    and d = softplus(rho).  The flows start at the identity (zeroed output layer), so the guide
    starts as the diagonal Gaussian N(init_loc, init_scale^2).  A batched model gets one set of
    flows per image, image b's initialised from ``seeds[b]`` (default: torch's global generator).

    With ``init_scale_tril`` C (a fitted full-rank Gaussian's Cholesky factor, fixed):
    w = loc + C (d * T_K(...T_1(z))), d starting at 1, so the guide starts as N(init_loc, C C^T)
    and the flows learn how the posterior bends away from that Gaussian."""

    def __init__(self, model: BRGMModel, num_flows: int = 2, hidden_dim: int | None = None,
                 init_loc: torch.Tensor | None = None, init_scale: torch.Tensor | float | None = None,
                 prefix: str = "", seeds: Sequence[int] | None = None,
                 init_scale_tril: torch.Tensor | None = None) -> None:
        if num_flows < 1:
            raise ValueError(f"num_flows must be >= 1, got {num_flows}")
        if init_scale_tril is not None and init_scale is not None:
            raise ValueError("give init_scale or init_scale_tril, not both")
        if init_scale_tril is None:
            base = MultivariateGaussianGuide(model, 1, init_loc, init_scale, prefix)
        else:
            base = MultivariateGaussianGuide(model, None, init_loc, None, prefix, init_scale_tril=init_scale_tril)
        self.preconditioner = base.preconditioner
        self._setup_images(model)
        self.site, self.shape, self.dim, self.unit = base.site, base.shape, base.dim, base.unit
        self.init_loc, self.init_rho, self.prefix = base.init_loc, base.init_rho, prefix
        hidden = [hidden_dim or max(2 * self.dim, 8)]
        if seeds is not None and len(seeds) != self.num_images:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_images} image(s)")
        per_image = []
        for b in range(self.num_images):
            with torch.random.fork_rng(devices=[]) if seeds is not None else contextlib.nullcontext():
                if seeds is not None:
                    torch.manual_seed(int(seeds[b]))
                g = torch.Generator().manual_seed(0)
                nets = []
                for _ in range(num_flows):
                    net = AutoRegressiveNN(self.dim, hidden, permutation=torch.randperm(self.dim, generator=g))
                    last = net.layers[-1]
                    torch.nn.init.zeros_(last.weight)
                    torch.nn.init.zeros_(last.bias)
                    nets.append(net.to(self.init_loc))
            per_image.append(torch.nn.ModuleList(nets))
        self.nets = torch.nn.ModuleList(per_image)

    @property
    def device(self) -> torch.device:
        return self.init_loc.device

    def loc(self) -> torch.Tensor:
        return pyro.param(self.prefix + "loc", lambda: self.init_loc.clone())

    def _image_transforms(self, image: int) -> list:
        nets = pyro.module(self.prefix + "flows", self.nets)[image]
        diag = self._pick(F.softplus(pyro.param(self.prefix + "rho", lambda: self.init_rho.clone())), image)
        loc = self._pick(self.loc(), image).flatten()
        flows = [AffineAutoregressive(net) for net in nets]
        if self.preconditioner is None:
            return flows + [AffineTransform(loc, self.unit * diag, event_dim=1)]
        tril = self._pick(self.preconditioner, image)
        return flows + [AffineTransform(torch.zeros_like(loc), diag, event_dim=1), LowerCholeskyAffine(loc, tril)]

    def distribution(self, image: int = 0) -> dist.Distribution:
        """Image ``image``'s q over the flattened latent (event shape (n,))."""
        base = dist.Normal(torch.zeros(self.dim).to(self.init_loc), torch.ones(self.dim).to(self.init_loc))
        return dist.TransformedDistribution(base.to_event(1), self._image_transforms(image))

    def _flow(self, x: torch.Tensor, image: int) -> tuple[torch.Tensor, torch.Tensor]:
        """T(x) and log|det dT/dx| by the forward pass (never inverting T: an IAF's inverse is
        sequential over the dimensions and, under autograd, holds n copies of the activations)."""
        log_det = torch.zeros(x.shape[:-1]).to(x)
        for t in self._image_transforms(image):
            y = t(x)
            ladj = t.log_abs_det_jacobian(x, y)
            log_det = log_det + _sum_rightmost(ladj, ladj.ndim - log_det.ndim)
            x = y
        return x, log_det

    def __call__(self) -> torch.Tensor:
        with self.images_plate():
            z = self.noise((self.dim,), self.init_loc, prefix=self.prefix)
            if self.batched:
                parts = [self._flow(z[..., b, :], b) for b in range(self.num_images)]
                x, log_det = torch.stack([p[0] for p in parts], -2), torch.stack([p[1] for p in parts], -1)
            else:
                x, log_det = self._flow(z, 0)
            return self.emit(x.reshape(*x.shape[:-1], *self.shape), -log_det)

    def median(self) -> dict[str, torch.Tensor]:
        """T(0): the image of the base distribution's mode (per image)."""
        with torch.no_grad():
            zero = torch.zeros(self.dim).to(self.init_loc)
            points = [self._flow(zero, b)[0].reshape(self.shape) for b in range(self.num_images)]
        return {self.site: torch.stack(points) if self.batched else points[0]}

    def _freeze_image(self, image: int) -> LatentDistribution:
        d = self.distribution(image)
        frozen = dist.TransformedDistribution(d.base_dist, [_detached(t) for t in d.transforms])
        median = self._flow(torch.zeros(self.dim).to(self.init_loc), image)[0].reshape(self.shape)
        return LatentDistribution(frozen, self.shape, median.clone(), has_log_prob=False)


def _detached(t):
    """A flow's fixed affine steps without their autograd history (the IAF nets are frozen by the caller)."""
    if isinstance(t, AffineTransform):
        return AffineTransform(t.loc.detach(), t.scale.detach(), event_dim=1)
    if isinstance(t, LowerCholeskyAffine):
        return LowerCholeskyAffine(t.loc.detach(), t.scale_tril.detach())
    return t


class AutoGuideAdapter(LatentGuide):
    """Pyro's ``AutoDelta`` in the common contract: a point mass at the fitted value of every
    latent site; its frozen q is that point (each draw equals it)."""

    def __init__(self, model: BRGMModel, auto: Callable) -> None:
        self._setup_images(model)
        self.auto, self.site = auto, model.prior.site
        self.shape = model.prior.init_loc().shape

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.auto(*args, **kwargs)

    def median(self) -> dict[str, torch.Tensor]:
        return self.auto.median()

    def _freeze_image(self, image: int) -> LatentDistribution:
        point = self._pick(self.median()[self.site], image).detach().clone()
        return LatentDistribution(dist.Delta(point.flatten(), event_dim=1), self.shape, point)


class PredictiveLatents:
    """Draws of the latent site from any fitted callable guide, by running it under ``Predictive``
    in the param store ``state`` it was fitted in; ``mean`` is its ``median()`` where it has one."""

    has_log_prob = False

    def __init__(self, guide: Callable, site: str, state: dict, mean: torch.Tensor | None) -> None:
        self.guide, self.site, self.state, self.mean = guide, site, state, mean

    def sample(self, k: int) -> torch.Tensor:
        with pyro.get_param_store().scope(self.state), torch.no_grad():
            return Predictive(self.guide, num_samples=k, parallel=True)()[self.site].detach()

    def images(self) -> list["PredictiveLatents"]:
        return [self]


class CallableGuide(LatentGuide):
    """A user's callable guide in the common contract: ``median()`` is its own (if it has one);
    frozen, it is sampled by running it (``PredictiveLatents``), without a log density."""

    def __init__(self, model: BRGMModel, guide: Callable) -> None:
        self._setup_images(model)
        self.guide, self.site = guide, model.prior.site
        self.shape = model.prior.init_loc().shape

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.guide(*args, **kwargs)

    def median(self) -> dict[str, torch.Tensor]:
        median = getattr(self.guide, "median", None)
        if median is None:
            raise NotImplementedError(f"the guide {self.guide!r} has no median()")
        return median()

    def freeze(self, image: int | None = None) -> PredictiveLatents:  # type: ignore[override]
        if image is not None:
            raise ValueError("a callable guide's draws cannot be split by image")
        try:  # Pyro's AutoIAFNormal has a median() that raises NotImplementedError
            mean = self.median()[self.site].detach()
        except NotImplementedError:
            mean = None
        return PredictiveLatents(self.guide, self.site, pyro.get_param_store().get_state(), mean)


GUIDES = ("gaussian", "shared", "normal", "fullrank", "lowrank", "flow", "delta")


def make_guide(guide: str | Callable, model: BRGMModel, init_scale: torch.Tensor | float | None = None,
               init_loc: torch.Tensor | None = None, rank: int | None = None, num_flows: int = 2,
               init_scale_tril: torch.Tensor | None = None, seeds: Sequence[int] | None = None) -> LatentGuide:
    """A ``LatentGuide`` by name (``GUIDES``), a ``LatentGuide`` as is, or a user's callable wrapped
    in ``CallableGuide``.  ``init_loc`` (the starting point, default w_avg; for a batched model
    one image's or one per image) applies to every named guide; ``rank`` (default
    min(10, latent size)) to "lowrank"; ``num_flows`` and ``seeds`` (the flows' initialisation,
    one per image) to "flow"; ``init_scale_tril`` (a starting covariance's Cholesky factor over
    the flattened latent) to "fullrank" and "flow" (the flows then bend that Gaussian).  "normal"
    is the diagonal Gaussian of every latent site started at scale 0.1 (Pyro's ``AutoNormal`` family)
    without the Eq. 8 penalty."""
    if init_scale_tril is not None and guide not in ("fullrank", "flow"):
        raise ValueError(f"init_scale_tril applies to the 'fullrank' and 'flow' guides only, not {guide!r}")
    if isinstance(guide, LatentGuide):
        return guide
    if callable(guide):
        return CallableGuide(model, guide)
    start = model.prior.init_loc().detach().clone() if init_loc is None else init_loc.detach().clone()
    if guide in ("gaussian", "normal"):
        q = GaussianGuide(model, 0.1 if guide == "normal" and init_scale is None else init_scale,
                          penalised=guide == "gaussian")
        q.init_loc = start.to(q.init_loc)
        q.per_image(q.init_loc, len(q.shape), "init_loc")  # checks the shape now
        return q
    if guide == "shared":
        if init_loc is not None:
            raise ValueError("init_loc is not supported by the 'shared' guide")
        return SharedGaussianGuide(model, init_scale)
    if guide in ("fullrank", "lowrank", "flow") and model.latent_parameters():
        raise ValueError(f"the {guide!r} guide covers w only, but this model also infers "
                         f"{', '.join(model.latent_parameters())}; use guide='gaussian' or 'normal' for it")
    if guide == "fullrank":
        return MultivariateGaussianGuide(model, None, start, init_scale, init_scale_tril=init_scale_tril)
    if guide == "lowrank":
        return MultivariateGaussianGuide(model, min(10, model.prior.init_loc().numel()) if rank is None else rank,
                                         start, init_scale)
    if guide == "flow":
        return FlowGuide(model, num_flows, init_loc=start, init_scale=init_scale, seeds=seeds,
                         init_scale_tril=init_scale_tril)
    if guide == "delta":
        if model.batched and start.shape == model.prior.init_loc().shape:
            start = start.expand(model.num_images, *start.shape)
        initial = model.initial_values()  # + the starting values of other latent sites
        return AutoGuideAdapter(model, AutoDelta(model.model, init_loc_fn=init_to_value(
            values={model.prior.site: start, **initial})))
    raise ValueError(f"unknown guide {guide!r}; expected one of {GUIDES} or a callable")


def gaussian_guide_at(model: BRGMModel, map_result, init_scale: float = 0.02):
    """The paper's ``GaussianGuide`` started at a MAP estimate (w and the other latent sites), with
    a small initial scale: a warm start for VI, which otherwise spends its first few hundred steps
    shrinking q(w) from the prior's width (and meanwhile over-estimates a learned noise level)."""
    guide = GaussianGuide(model, init_scale)
    guide.init_loc = map_result.latent.detach().clone()
    guide.auxiliary.initial = {k: v.detach().clone() for k, v in map_result.parameters.items()}
    return guide
