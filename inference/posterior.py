"""Posterior samples of w and of reconstructions, in memory-bounded chunks, for one image or a
batch of B images (a model built on observations (B, C, H, W))."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch

from brgm_pyro.models.brgm import BRGMModel, generate
from brgm_pyro.models.misfit import conditional_residual_variance, point_images, predictive_images


@dataclass
class PosteriorSamples:
    """latents: (n, *prior site shape); ws: (n, num_ws, w_dim); images: (n, C, H, W) on the CPU
    (None if not requested): G(w), or the clean image's predictive draw G(w) + r for a model with a
    misfit term (``models.misfit``).  Row i of each belongs to the same draw.  For a batched posterior
    each has an image axis after the draw axis: (n, B, ...)."""

    latents: torch.Tensor
    ws: torch.Tensor
    images: torch.Tensor | None


@dataclass
class PixelStatistics:
    """Per-pixel posterior mean and standard deviation of G(w) (of G(w) + r for a model with a misfit
    term, ``models.misfit``), (C, H, W) ((B, C, H, W) for a batched posterior), over n samples."""

    mean: torch.Tensor
    std: torch.Tensor
    num_samples: int


def single_image_model(model: BRGMModel, image: int) -> BRGMModel:
    """The model of image ``image`` of a batched model (the same parts, one observation)."""
    if not model.batched:
        if image != 0:
            raise IndexError(f"image {image} of a single-image model")
        return model
    if not 0 <= image < model.num_images:
        raise IndexError(f"image {image} of {model.num_images}")
    return dataclasses.replace(model, observation=model.observation[image])


@runtime_checkable
class InferenceResult(Protocol):
    """What every runner's result offers (``MAPResult``, ``MCMCResult``, ``VIPosterior`` and every other
    ``Posterior``), so that diagnostics, reports and the calibration study never ask for its class:

    - ``posterior``: the ``Posterior`` that draws w (the result itself for a posterior, the chains'
      draws for MCMC), or None for a point estimate;
    - ``latent_draws(num_draws, seed)``: draws of the latent site (chains, draws, *site shape): one
      chain of ``num_draws`` for an approximation, every draw by chain for MCMC, (1, 1, ...) for a
      point estimate;
    - ``parameter_draws(num_draws, seed)``: site -> draws of the model's latent sites besides w;
    - ``sample_stats()``: per-draw sampler statistics (e.g. ``{"diverging": (chains, draws)}``), or {};
    - ``history`` (the optimisation's loss and terms, or None) and ``wall_seconds``.
    """

    @property
    def posterior(self) -> "Posterior | None": ...

    history: Any
    wall_seconds: float | None

    def latent_draws(self, num_draws: int, seed: int = 0) -> torch.Tensor: ...

    def parameter_draws(self, num_draws: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]: ...

    def sample_stats(self) -> dict[str, Any]: ...


class Posterior:
    """Samples of w from a fitted approximation (or MCMC draws) and the images they generate.

    ``sample_latents(n)`` returns n draws of the prior's latent site ((n, B, *site shape) for a
    batched model); ``mean_latent`` (optional) is the point whose image is the "posterior mean
    image" G(mu_v).  A batched posterior also takes ``image_posterior(b)``, which gives image b's
    own posterior (``image(b)``): what a fit of image b alone gives.
    """

    def __init__(self, model: BRGMModel, sample_latents: Callable[[int], torch.Tensor],
                 mean_latent: torch.Tensor | None = None,
                 image_posterior: Callable[[int], "Posterior"] | None = None) -> None:
        self.model = model
        self.sample_latents = sample_latents  # n -> (n, *site shape) on the model's device, from torch's generator
        self.mean_latent = mean_latent
        self._image_posterior = image_posterior

    history: Any = None  # the fit's History where there is one (VI)

    # --------------------------------------------------------------- the InferenceResult interface
    @property
    def posterior(self) -> "Posterior":
        return self

    @property
    def wall_seconds(self) -> float | None:
        return None if self.history is None else self.history.wall_seconds

    def latent_draws(self, num_draws: int, seed: int = 0) -> torch.Tensor:
        """(1, num_draws, *site shape): one chain of independent draws."""
        return self.sample(num_draws, images=False, seed=seed).latents.unsqueeze(0)

    def parameter_draws(self, num_draws: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
        """Draws of the model's latent sites besides w: {} for a model without them; a posterior that
        covers w only raises."""
        sites = list(self.model.latent_parameters())
        if sites:
            raise NotImplementedError(f"a {type(self).__name__} covers w only, not {', '.join(sites)}")
        return {}

    def sample_stats(self) -> dict[str, Any]:
        return {}

    # ---------------------------------------------------------------
    @property
    def num_images(self) -> int:
        return self.model.num_images

    def image(self, index: int) -> "Posterior":
        """Image ``index``'s posterior (the posterior itself for a single image)."""
        if not self.model.batched:
            if index != 0:
                raise IndexError(f"image {index} of a single-image posterior")
            return self
        if self._image_posterior is None:
            raise ValueError(f"this {type(self).__name__} cannot be split by image")
        if not 0 <= index < self.num_images:
            raise IndexError(f"image {index} of {self.num_images}")
        return self._image_posterior(index)

    def _per_image_seeds(self, seed: int | Sequence[int] | None) -> list[int] | None:
        if seed is None or isinstance(seed, int):
            return None
        seeds = [int(s) for s in seed]
        if len(seeds) != self.num_images:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_images} image(s); give one per image")
        return seeds

    @torch.no_grad()
    def sample(self, n: int, chunk_size: int = 64, images: bool = True,
               seed: int | Sequence[int] | None = None) -> PosteriorSamples:
        """n posterior draws; images are generated ``chunk_size`` at a time and kept on the CPU.

        ``seed``: one seed, or one per image (a batched posterior then draws image b's samples
        exactly as ``image(b).sample(n, seed=seed[b])`` does)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        seeds = self._per_image_seeds(seed)
        if seeds is not None:
            if not self.model.batched:
                return self.sample(n, chunk_size, images, seeds[0])
            parts = [self.image(b).sample(n, chunk_size, images, s) for b, s in enumerate(seeds)]
            return PosteriorSamples(torch.stack([p.latents for p in parts], 1), torch.stack([p.ws for p in parts], 1),
                                    torch.stack([p.images for p in parts], 1) if images else None)
        if seed is not None:
            torch.manual_seed(seed)
        all_latents, all_ws, all_images = [], [], []
        for start in range(0, n, chunk_size):
            k = min(chunk_size, n - start)
            latents = self.sample_latents(k)
            ws = self.model.prior.ws_from_latent(latents)
            all_latents.append(latents.cpu())
            all_ws.append(ws.cpu())
            if images:  # G(w), plus the misfit r | y, w when the model has one (models.misfit)
                all_images.append(predictive_images(self.model, generate(self.model.generator, ws)).cpu())
        return PosteriorSamples(torch.cat(all_latents), torch.cat(all_ws), torch.cat(all_images) if images else None)

    @torch.no_grad()
    def mean_image(self) -> torch.Tensor:
        """G(mu_v): (1, C, H, W), or (B, C, H, W) for a batched posterior."""
        if self.mean_latent is None:
            raise ValueError("this posterior has no mean latent; use pixel_statistics() instead")
        ws = self.model.prior.ws_from_latent(self.mean_latent)
        return generate(self.model.generator, ws if self.model.batched else ws.unsqueeze(0))

    @torch.no_grad()
    def pixel_statistics(self, n: int = 1000, chunk_size: int = 64,
                         seed: int | Sequence[int] | None = None) -> PixelStatistics:
        """Per-pixel mean and std of the clean image's posterior over n draws of w, accumulated in float64
        without storing images; ``seed`` as in ``sample``.

        Without a misfit term the clean image is G(w).  With one it is G(w) + r, and r is integrated out
        exactly rather than drawn: the mean averages G(w) + E[r | y, w] (``point_images``) and the variance
        adds Var[r | y, w], the same for every w, to the spread of those (the law of total variance).  Same
        expectations as the moments of ``sample``'s predictive draws, less Monte Carlo noise."""
        if n < 2:
            raise ValueError(f"n must be >= 2 for a standard deviation, got {n}")
        seeds = self._per_image_seeds(seed)
        if seeds is not None:
            if not self.model.batched:
                return self.pixel_statistics(n, chunk_size, seeds[0])
            parts = [self.image(b).pixel_statistics(n, chunk_size, s) for b, s in enumerate(seeds)]
            return PixelStatistics(torch.stack([p.mean for p in parts]), torch.stack([p.std for p in parts]), n)
        if seed is not None:
            torch.manual_seed(seed)
        total = total_sq = None
        for start in range(0, n, chunk_size):
            k = min(chunk_size, n - start)
            imgs = generate(self.model.generator, self.model.prior.ws_from_latent(self.sample_latents(k)))
            imgs = point_images(self.model, imgs).double()
            s, s2 = imgs.sum(0), imgs.square().sum(0)
            total = s if total is None else total + s
            total_sq = s2 if total_sq is None else total_sq + s2
        mean = total / n
        var = ((total_sq - n * mean.square()) / (n - 1)).clamp_min(0)
        misfit_var = conditional_residual_variance(self.model)
        if misfit_var is not None:
            var = var + misfit_var.to(var.device).reshape(var.shape[-3:])
        return PixelStatistics(mean.float().cpu(), var.sqrt().float().cpu(), n)
