"""The BRGM generative model (Eqs. 2 and 4): w ~ p(w), I | w ~ p(I | f(G(w))).

    ws = prior()                       # Gaussian on W+ (Eq. 2, first product)
    colinearity(ws)                    # von Mises factor (Eq. 2, second product)
    x = G.synthesis(ws)                # deterministic generator
    theta = sample corruption params   # only latent ones (beyond the paper), e.g. "corruption.blur_sigma"
    for likelihood in likelihoods:     # pixel and perceptual Gaussians (Eq. 4); a learned
        likelihood(f_theta(x), I, mask)  # sigma is sampled here ("sigma_pixel")

Its negative log joint is half of the loss of Eq. 6 (up to a constant) when every parameter is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import pyro
import torch

from brgm_pyro.corruptions.base import Corruption
from brgm_pyro.corruptions.latent import LatentParameter
from brgm_pyro.corruptions.setting import setting_name
from brgm_pyro.functional import image_shape
from brgm_pyro.generators.base import PriorGenerator

from .config import BRGMConfig, released_lambda_colin
from .likelihoods import PerceptualLikelihood, PixelLikelihood, gaussian_pixel_noise
from .misfit import MisfitPixelLikelihood, misfit_applies
from .priors import ColinearityPrior, GaussianLatentPrior, LatentPrior, LayerCorrelatedPrior, gaussian_loc_scale


def check_observation(generator: PriorGenerator, corruption: Corruption, observation: torch.Tensor) -> torch.Tensor:
    """Return the observation as (C', H', W'), or (B, C', H', W') for a batch of B > 1 independent
    observations, in the generator's float dtype (float64 / float16 observations are converted);
    raise if it is not a finite float tensor of f(G(w))'s shape."""
    if not isinstance(observation, torch.Tensor):
        raise TypeError(f"observation must be a torch tensor (float, in [-1, 1]), got {type(observation).__name__}")
    if not observation.is_floating_point():
        raise TypeError(f"observation must be a float tensor in [-1, 1], got dtype {observation.dtype}; "
                        "convert uint8 images with x / 127.5 - 1")
    generated = image_shape(generator)
    expected = tuple(corruption.output_shape(generated))
    obs = observation
    if obs.ndim == 4 and obs.shape[0] == 1:
        obs = obs[0]
    shape = tuple(obs.shape[1:]) if obs.ndim == 4 else tuple(obs.shape)
    if shape != expected or obs.ndim == 4 and obs.shape[0] == 0:
        raise ValueError(
            f"observation has shape {tuple(observation.shape)}, but {corruption.describe()} of the "
            f"generator's {generated} images gives {expected} (or (B, *{expected}))"
        )
    finite = torch.isfinite(obs)
    if not bool(finite.all()):
        raise ValueError(f"observation has {int((~finite).sum())} non-finite values (NaN or inf) of {obs.numel()}; "
                         "unobserved pixels are given by the corruption's mask, not by NaN")
    dtype = getattr(generator, "dtype", None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return obs.to(dtype)


def generate(generator: PriorGenerator, ws: torch.Tensor) -> torch.Tensor:
    """G(ws) for ws with any leading batch dims (..., L, D) -> (..., C, H, W)."""
    batch = ws.shape[:-2]
    images = generator.synthesis(ws.reshape(-1, *ws.shape[-2:]))
    return images.reshape(*batch, *images.shape[1:])


def corrupt(corruption: Corruption, images: torch.Tensor,
            parameters: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """f(x) for x with any leading batch dims (..., C, H, W).

    ``parameters``: values of the corruption's latent parameters (site -> tensor of shape () or
    broadcastable to the batch dims), bound while f runs."""
    batch = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    if not parameters:
        out = corruption(flat)
    else:
        values = {k: (torch.as_tensor(v).expand(batch).reshape(-1) if torch.as_tensor(v).ndim else torch.as_tensor(v))
                  for k, v in parameters.items()}
        with corruption.bind(values):
            out = corruption(flat)
    return out.reshape(*batch, *out.shape[1:])


def sample_corruption_parameters(corruption: Corruption) -> dict[str, torch.Tensor]:
    """Sample every latent parameter of the corruption as a Pyro site (prior from its ``LatentParameter``)."""
    return {site: pyro.sample(site, p.prior) for site, p in corruption.latent_parameters().items()}


@dataclass
class BRGMModel:
    """The parts of the model, each replaceable (None switches a part off).

    ``model()`` is the Pyro model; it takes no arguments (the observation is bound here).
    An observation of shape (B, C', H', W') with B > 1 is B independent problems sharing the
    parts: the latent gets a leading batch dimension under ``pyro.plate("images", B)``
    (supported by ``map_estimate``, which then optimises all B latents at once).
    ``prior`` is any ``LatentPrior`` (``models/priors.py``).

    The paper's model of an x4 super-resolution observation, with the pixel likelihood only:

    >>> from pyro import poutine
    >>> from brgm_pyro.corruptions import SuperResolution
    >>> from brgm_pyro.generators import load_generator
    >>> from brgm_pyro.models import GaussianLatentPrior, PixelLikelihood
    >>> G = load_generator("fashion-mnist-32", device="cpu")
    >>> prior = GaussianLatentPrior.from_stats(G.latent_stats(num_samples=1000), G.num_ws)
    >>> f = SuperResolution(4)
    >>> y = f(G.synthesis(prior.init_loc()[None]))[0]        # an observation (1, 8, 8)
    >>> model = BRGMModel(G, f, y, prior, ColinearityPrior(0.1), (PixelLikelihood(0.1),))
    >>> trace = poutine.trace(model).get_trace()
    >>> [name for name, site in trace.nodes.items() if site["type"] == "sample"]
    ['w', 'colinearity', 'obs_pixel']
    >>> trace.nodes["w"]["value"].shape                      # W+: (num_ws, w_dim)
    torch.Size([8, 64])
    >>> bool(torch.isfinite(trace.log_prob_sum()))           # log p(w) + log p(I | w), Eqs. 2 and 4
    True
    """

    generator: PriorGenerator
    corruption: Corruption
    observation: torch.Tensor
    prior: LatentPrior
    colinearity: ColinearityPrior | Callable[[torch.Tensor], torch.Tensor] | None = None
    likelihoods: Sequence[Callable[..., None]] = field(default_factory=tuple)
    config: BRGMConfig | None = None  # the weights the parts were built from (set by ``brgm_model``)

    def __post_init__(self) -> None:
        if not isinstance(self.prior, LatentPrior):
            missing = [m for m in ("site", "__call__", "init_loc", "init_scale", "ws_from_latent")
                       if not hasattr(self.prior, m)]
            raise TypeError(f"prior {type(self.prior).__name__} does not meet the LatentPrior contract "
                            f"(models/priors.py): it lacks {', '.join(missing)}")
        self.observation = check_observation(self.generator, self.corruption, self.observation)
        shape = image_shape(self.generator)
        self.image_shape = shape
        self.mask = self.corruption.observation_mask(shape)
        device = getattr(self.generator, "device", self.observation.device)  # follow the generator
        self.observation = self.observation.to(device)
        if self.mask is not None:
            self.mask = self.mask.to(device)
        self.latent_parameters()  # validates: unique site names

    def latent_parameters(self) -> dict[str, LatentParameter]:
        """The model's latent sites besides the prior's w: unknown corruption parameters and noise
        levels, by site name (empty for the paper's model)."""
        out = dict(self.corruption.latent_parameters())
        for likelihood in self.likelihoods:
            own = getattr(likelihood, "latent_parameters", dict)()
            clash = set(own) & set(out)
            if clash:
                raise ValueError(f"latent site name(s) {sorted(clash)} used twice; give the parameters distinct names")
            out.update(own)
        reserved = {self.prior.site} | {getattr(lik, "site", None) for lik in self.likelihoods}
        if set(out) & reserved:
            raise ValueError(f"latent parameter site(s) {sorted(set(out) & reserved)} clash with the model's own sites")
        return out

    def initial_values(self) -> dict[str, torch.Tensor]:
        """Starting values of the latent parameters (their ``init`` or prior median), for init_to_value."""
        device = self.observation.device
        return {site: p.initial_value().to(device) for site, p in self.latent_parameters().items()}

    @property
    def batched(self) -> bool:
        """True for a (B, C', H', W') batch of independent observations."""
        return self.observation.ndim == 4

    @property
    def num_images(self) -> int:
        return self.observation.shape[0] if self.batched else 1

    def __call__(self) -> torch.Tensor:
        return self.model()

    def model(self) -> torch.Tensor:
        if not self.batched:
            return self._model()
        with pyro.plate("images", self.num_images, dim=-1):
            return self._model()

    def _model(self) -> torch.Tensor:
        ws = self.prior()
        if self.colinearity is not None:
            self.colinearity(ws)
        parameters = sample_corruption_parameters(self.corruption)
        corrupted = corrupt(self.corruption, generate(self.generator, ws), parameters)
        for likelihood in self.likelihoods:
            likelihood(corrupted, self.observation, self.mask)
        return ws

    def require_single(self, what: str) -> None:
        if self.batched:
            raise ValueError(f"{what} takes one observation at a time; this model holds {self.num_images} images "
                             "(build one model per image, e.g. single_image_model(model, b), or use map_estimate "
                             "for a batch)")

    def require_gaussian_prior(self, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of a Gaussian prior site without the colinearity factor, or a ``ValueError``
        naming the missing capability (``prior.gaussian_loc_scale()``)."""
        loc_scale = gaussian_loc_scale(self.prior)
        if loc_scale is None:
            raise ValueError(f"{what} needs a Gaussian prior on w: {type(self.prior).__name__}.gaussian_loc_scale() "
                             "is missing or returned None")
        if self.colinearity is not None:
            raise ValueError(f"{what} does not include the colinearity factor: use kappa=0")
        return loc_scale

    def require_gaussian_pixel_noise(self, what: str) -> float:
        """sigma of the one likelihood, Gaussian pixel noise with a known sigma, or a ``ValueError``
        naming the missing capability (``likelihood.gaussian_pixel_noise()``)."""
        sigmas = [gaussian_pixel_noise(lik) for lik in self.likelihoods]
        if len(sigmas) != 1 or sigmas[0] is None:
            raise ValueError(f"{what} needs one likelihood with Gaussian pixel noise of known sigma "
                             "(its gaussian_pixel_noise() returning sigma), got "
                             f"{[type(lik).__name__ for lik in self.likelihoods]}")
        return sigmas[0]


def _check_generator_is_finite(generator: PriorGenerator, prior: LatentPrior) -> None:
    """One cheap probe before Pyro sees the model: the prior's mean and std and G(mean) must be
    finite (NaN / inf weights otherwise surface as Pyro's distribution-argument errors)."""
    mean, std = getattr(prior, "mean", None), getattr(prior, "std", None)
    for name, value in (("mean", mean), ("std", std)):
        if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
            raise ValueError(f"the prior's {name} over w is not finite (NaN or inf): the generator's mapping "
                             "network gives non-finite w; check its weights")
    if not isinstance(mean, torch.Tensor) or mean.shape[-2:] != (generator.num_ws, generator.w_dim):
        return  # a custom prior: no probe point
    ws = mean.reshape(-1, generator.num_ws, generator.w_dim)[:1]
    ws = ws.to(device=getattr(generator, "device", ws.device), dtype=getattr(generator, "dtype", ws.dtype))
    with torch.no_grad():
        image = generator.synthesis(ws)
    if not bool(torch.isfinite(image).all()):
        raise ValueError("the generator's image at the prior mean, G(mu), is not finite (NaN or inf): its "
                         "synthesis network has non-finite weights or overflows; check the checkpoint")


def released_config(generator: PriorGenerator, corruption: Corruption,
                    features: torch.nn.Module | None = None) -> BRGMConfig:
    """``BRGMConfig.from_released`` with the output and feature sizes of this problem (and the
    colinearity weight 1.0 for super-resolution factors above 16, as released)."""
    out_shape = corruption.output_shape(image_shape(generator))
    num_outputs = out_shape[0] * out_shape[1] * out_shape[2]
    num_features = None
    if features is not None:
        with torch.no_grad():
            probe = torch.zeros(1, *out_shape, device=getattr(generator, "device", None))
            num_features = int(features(probe).shape[-1])
    factor = getattr(corruption, "factor", None)
    task = "super-resolution" if factor is not None else "other"
    return BRGMConfig.from_released(generator.num_ws, generator.w_dim, num_outputs, num_features,
                                    lambda_colin=released_lambda_colin(task, factor))


def default_config(generator: PriorGenerator, corruption: Corruption,
                   features: torch.nn.Module | None = None) -> BRGMConfig:
    """The weights ``brgm_model`` uses when given no config: the generator's recommended balance for
    this corruption's setting (``generator.metadata["recommended_configs"][setting_name(corruption)]``,
    e.g. a tight pixel likelihood for super-resolution and a loose one for in-painting), laid over its
    recommended balance for every setting (``metadata["recommended_config"]``), else over the authors'
    released balance for this problem's sizes (``released_config``); the perceptual sigma dropped when
    ``features`` is None, and a recommended misfit scale (``models.misfit``) dropped for a corruption it cannot
    be integrated out for (not linear, or with latent parameters): there the paper's model."""
    metadata = getattr(generator, "metadata", None)
    metadata = metadata if isinstance(metadata, dict) else {}
    recommended = _metadata_config(metadata.get("recommended_config"), "['recommended_config']")
    per_setting = metadata.get("recommended_configs")
    if per_setting is not None and not isinstance(per_setting, dict):
        raise ValueError(f"the generator's metadata['recommended_configs'] must be a dict, got "
                         f"{type(per_setting).__name__}")
    setting = setting_name(corruption)
    override = _metadata_config((per_setting or {}).get(setting), f"['recommended_configs'][{setting!r}]")
    if not recommended and not override:
        return released_config(generator, corruption, features)
    base = released_config(generator, corruption, features) if not recommended else BRGMConfig()
    try:
        config = replace(base, **{**recommended, **override})
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"the generator's recommended weights for {setting or 'this corruption'} are not a valid "
                         f"BRGMConfig: {err}") from None
    if config.misfit_scale is not None and not misfit_applies(corruption, image_shape(generator)):
        config = replace(config, misfit_scale=None)  # a non-linear operator or one with latent parameters
    return config if features is not None else replace(config, sigma_perceptual=None)


def _metadata_config(value: object, where: str) -> dict:
    """A weights dict of the metadata (``recommended_config`` or one setting's entry), its keys checked
    (checkpoint files are validated at load; this guards metadata set in memory); {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"the generator's metadata{where} must be a dict, got {type(value).__name__}")
    unknown = sorted(str(k)[:40] for k in value if k not in BRGMConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"the generator's metadata{where} has unknown keys {unknown[:5]}; "
                         f"known: {sorted(BRGMConfig.__dataclass_fields__)}")
    return dict(value)


def brgm_model(
    generator: PriorGenerator,
    corruption: Corruption,
    observation: torch.Tensor,
    prior: LatentPrior | None = None,
    colinearity: ColinearityPrior | None | str = "config",
    likelihoods: Sequence[Callable[..., None]] | None = None,
    config: BRGMConfig | None = None,
    features: torch.nn.Module | None = None,
    num_stats_samples: int = 10_000,
) -> BRGMModel:
    """Compose the BRGM model: the one builder (the ``brgm`` command line, the data-set runner and
    the recommended posterior's ``calibrated_model`` all call it).

    Parts not given are built from ``config``; the default (``config=None``) is
    ``default_config(generator, corruption, features)``: the generator's recommended balance if it
    carries one, else the authors' released balance for these shapes (``released_config``).

    prior: Gaussian on W+ with mu, sigma from 10,000 mapping samples (scalar sigma unless
    ``config.prior_std == "per-dimension"``; layers correlated by ``config.layer_correlation``,
    ``LayerCorrelatedPrior``, when it is above 0); colinearity: ``ColinearityPrior(config.kappa)``
    (None switches it off); likelihoods: pixel (``config.sigma_pixel``) and, when ``features``
    is given and ``config.sigma_perceptual`` is set, perceptual; with ``config.misfit_scale`` the
    pixel likelihood integrates out the generator's misfit (``models.misfit``).

    The model keeps the config it was built from as ``model.config`` (``sigma_perceptual`` set to
    None when there are no ``features``: that term is off); parts passed in explicitly are not
    described by it.
    """
    config = default_config(generator, corruption, features) if config is None else config
    if features is None and config.sigma_perceptual is not None:
        config = replace(config, sigma_perceptual=None)  # no feature network: no perceptual term
    if prior is None:
        stats = generator.latent_stats(num_stats_samples)
        per_dimension = config.prior_std == "per-dimension"
        if config.layer_correlation > 0:
            prior = LayerCorrelatedPrior.from_stats(stats, generator.num_ws, per_dimension,
                                                    correlation=config.layer_correlation)
        else:
            prior = GaussianLatentPrior.from_stats(stats, generator.num_ws, per_dimension=per_dimension)
        prior.to(stats.mean.device)
    _check_generator_is_finite(generator, prior)
    if colinearity == "config":
        colinearity = ColinearityPrior(config.kappa) if config.kappa > 0 else None
    if likelihoods is None:
        likelihoods = []
        if config.sigma_pixel is not None and config.misfit_scale is not None:
            likelihoods.append(MisfitPixelLikelihood.from_corruption(corruption, image_shape(generator),
                                                                     config.sigma_pixel, config.misfit_scale))
        elif config.sigma_pixel is not None:
            likelihoods.append(PixelLikelihood(config.sigma_pixel))
        if features is not None and config.sigma_perceptual is not None:
            likelihoods.append(PerceptualLikelihood(features, config.sigma_perceptual))
    return BRGMModel(generator, corruption, observation, prior, colinearity, tuple(likelihoods), config)
