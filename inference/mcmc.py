"""NUTS on the BRGM model: the gold standard that MAP and VI are compared against.

Every gradient evaluation runs the generator, so this is for small generators (the bundled
32x32 model, the linear test generator); on a StyleGAN2 at 1024^2 it is impractically slow.

``run_mcmc`` runs chains one after another, each seeded ``seed + chain``.  Its defaults (one chain
from w_avg, diagonal mass matrix adapted in warmup) are the historical ones; they do not mix on
ill-conditioned posteriors such as in-painting.  For those give every chain its own start
(``inits``, e.g. draws of a fitted Gaussian) and a dense ``inverse_mass_matrix`` (the Gaussian's
covariance): see ``brgm_pyro.inference.neutra.run_preconditioned_nuts`` and ``run_neutra``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_value

from brgm_pyro.models.brgm import BRGMModel

from ._runner import inference_scope
from .posterior import Posterior


@dataclass
class MCMCResult:
    """Draws of the latent site (chains, draws, *site shape), divergences (chains, draws), and the sampler.

    Per chain: ``step_sizes`` (the adapted step size), ``num_steps`` (chains, draws: leapfrog
    steps, i.e. gradient evaluations, of each draw; a tree of depth d takes up to 2^d - 1),
    ``accept_probs`` (mean NUTS acceptance statistic of the sampling phase, the quantity the
    step size adaptation targets) and ``chain_seconds``
    (wall time of warmup + sampling).  ``inits`` (chains, *site shape) are the starting points.
    ``setup_seconds`` is the time spent before sampling (e.g. fitting a preconditioner), included
    in ``wall_seconds``.  ``mcmc`` is the last chain's Pyro ``MCMC`` object.  ``info``: the
    method's settings; ``diagnostics``: JSON-able convergence numbers a caller may store (e.g.
    ``mcmc_convergence(result)``; the calibration benchmark records them).  ``parameters``: draws
    (chains, draws) of the model's other latent sites (unknown noise levels and corruption
    parameters; empty for the paper's model).
    """

    latents: torch.Tensor
    divergences: torch.Tensor
    mcmc: MCMC
    wall_seconds: float
    posterior: Posterior
    parameters: dict[str, torch.Tensor] = field(default_factory=dict)
    step_sizes: torch.Tensor | None = None
    num_steps: torch.Tensor | None = None
    accept_probs: torch.Tensor | None = None
    chain_seconds: torch.Tensor | None = None
    inits: torch.Tensor | None = None
    setup_seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def num_chains(self) -> int:
        return self.latents.shape[0]

    @property
    def tree_depths(self) -> torch.Tensor | None:
        """Tree depth of every draw, ceil(log2(num_steps + 1)) (chains, draws)."""
        if self.num_steps is None:
            return None
        return torch.ceil(torch.log2(self.num_steps.double() + 1)).long()


class CountingNUTS(NUTS):
    """Pyro's NUTS that counts potential-energy evaluations (one per leapfrog step) and can start
    from a given inverse mass matrix (dense (n, n) or diagonal (n,)) over all latent sites.

    With a given mass matrix and ``adapt_mass_matrix=False`` only the step size is adapted in
    warmup; this is NUTS in the whitened coordinates z = L^-1 (w - mu) of a Gaussian N(mu, L L^T).
    """

    def __init__(self, model: Callable, inverse_mass_matrix: torch.Tensor | None = None, **kwargs: Any) -> None:
        if inverse_mass_matrix is not None:
            if inverse_mass_matrix.ndim not in (1, 2):
                raise ValueError(f"inverse_mass_matrix must be (n,) or (n, n), got {tuple(inverse_mass_matrix.shape)}")
            kwargs["full_mass"] = inverse_mass_matrix.ndim == 2
        super().__init__(model, **kwargs)
        self.initial_inverse_mass_matrix = inverse_mass_matrix
        self.num_evaluations = 0

    def _initialize_model_properties(self, model_args, model_kwargs):  # noqa: ANN001 - Pyro's signature
        super()._initialize_model_properties(model_args, model_kwargs)
        potential_fn = self.potential_fn

        def counted(params: dict[str, torch.Tensor]) -> torch.Tensor:
            self.num_evaluations += 1
            return potential_fn(params)

        self.potential_fn = counted

    def _initialize_adapter(self) -> None:
        super()._initialize_adapter()
        imm = self.initial_inverse_mass_matrix
        if imm is None:
            return
        adapter = self._adapter.mass_matrix_adapter
        (key, size), = adapter.mass_matrix_size.items()
        if imm.shape[0] != size:
            raise ValueError(f"inverse_mass_matrix has size {imm.shape[0]}, the latent sites {key} have {size}")
        options = {"dtype": self._potential_energy_last.dtype, "device": self._potential_energy_last.device}
        adapter.inverse_mass_matrix = {key: imm.to(**options)}
        if self._adapter.adapt_step_size:  # a step size that suits the new metric
            self._adapter.reset_step_size_adaptation(self._initial_params)


@dataclass
class ChainDraws:
    """What one chain returns: draws of one site, divergent draws, and the sampler statistics."""

    draws: torch.Tensor
    divergences: torch.Tensor
    step_size: float
    num_steps: torch.Tensor
    accept_prob: float
    seconds: float
    mcmc: MCMC
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # draws of the other latent sites


def sample_chain(
    model_fn: Callable,
    site: str,
    init: torch.Tensor,
    num_samples: int,
    warmup_steps: int,
    seed: int,
    scope_model: BRGMModel,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 8,
    inverse_mass_matrix: torch.Tensor | None = None,
    adapt_mass_matrix: bool = True,
    full_mass: bool = False,
    progress: bool = False,
    hook: Callable[[str, int, dict], None] | None = None,
    extra_init: dict[str, torch.Tensor] | None = None,
) -> ChainDraws:
    """One NUTS chain on ``model_fn`` started at ``init`` for ``site`` (and ``extra_init`` for the
    model's other latent sites, if any)."""
    t0 = time.perf_counter()
    with inference_scope(scope_model, seed):
        start = init_to_value(values={site: init, **(extra_init or {})})
        kernel = CountingNUTS(model_fn, inverse_mass_matrix=inverse_mass_matrix, target_accept_prob=target_accept_prob,
                              max_tree_depth=max_tree_depth, adapt_mass_matrix=adapt_mass_matrix,
                              full_mass=full_mass, init_strategy=start,
                              jit_compile=False)
        steps: list[int] = []
        last = [0]

        accept = [math.nan]

        def record(_kernel, params, stage, i):  # noqa: ANN001 - Pyro's hook signature
            if stage == "Sample":
                steps.append(kernel.num_evaluations - last[0])
                accept[0] = float(kernel._mean_accept_prob)  # running mean over the sampling phase (reset by cleanup)
            last[0] = kernel.num_evaluations
            if hook is not None:
                hook(stage, i, params)

        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=1,
                    disable_progbar=not progress, hook_fn=record)
        mcmc.run()
        samples = mcmc.get_samples()
        draws = samples[site].detach()
        others = {k: v.detach() for k, v in samples.items() if k != site}
        extra = mcmc.diagnostics()
        div = torch.zeros(num_samples, dtype=torch.bool)
        idx = extra.get("divergences", {}).get("chain 0", [])
        if len(idx):
            div[torch.as_tensor(idx, dtype=torch.long)] = True  # indices of divergent draws
        return ChainDraws(draws, div, float(kernel.step_size), torch.tensor(steps, dtype=torch.long), accept[0],
                          time.perf_counter() - t0, mcmc, others)


def chains_result(model: BRGMModel, chains: list[ChainDraws], latents: torch.Tensor, inits: torch.Tensor,
                  wall_seconds: float, setup_seconds: float = 0.0, info: dict[str, Any] | None = None) -> MCMCResult:
    """Assemble an ``MCMCResult`` from per-chain draws; ``latents`` (chains, draws, *site) of the model's site."""
    flat = latents.reshape(-1, *latents.shape[2:])
    device = model.observation.device

    def sample_latents(n: int) -> torch.Tensor:
        return flat[torch.randint(0, flat.shape[0], (n,))].to(device)

    posterior = Posterior(model, sample_latents, flat.mean(0).to(device))
    return MCMCResult(
        latents, torch.stack([c.divergences for c in chains]), chains[-1].mcmc, wall_seconds, posterior,
        step_sizes=torch.tensor([c.step_size for c in chains]),
        num_steps=torch.stack([c.num_steps for c in chains]),
        accept_probs=torch.tensor([c.accept_prob for c in chains]),
        chain_seconds=torch.tensor([c.seconds for c in chains]),
        inits=inits, setup_seconds=setup_seconds, info=dict(info or {}),
        parameters={k: torch.stack([c.extra[k] for c in chains]) for k in chains[0].extra},
    )


def run_mcmc(
    model: BRGMModel,
    num_samples: int = 200,
    warmup_steps: int = 200,
    num_chains: int = 1,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 8,
    init: torch.Tensor | None = None,
    seed: int = 0,
    progress: bool = True,
    callback: Callable[[int, str, dict], None] | None = None,
    *,
    inits: torch.Tensor | None = None,
    inverse_mass_matrix: torch.Tensor | None = None,
    adapt_mass_matrix: bool | None = None,
    setup_seconds: float = 0.0,
) -> MCMCResult:
    """Sample p(w | I) with NUTS, chains run one after another (chain c seeded ``seed + c``).

    Starts: ``inits`` (num_chains, *site shape), one per chain; else every chain starts at
    ``init`` (default w_avg).  Mass matrix: by default diagonal, adapted in warmup; a given
    ``inverse_mass_matrix`` over the flattened site ((n, n) dense or (n,) diagonal, n = numel of
    the site) is used from the start and, unless ``adapt_mass_matrix=True``, kept fixed (only the
    step size adapts).  ``max_tree_depth`` bounds the cost per draw (2^depth - 1 generator
    evaluations at most).  ``callback(chain, stage, info)`` is called after every transition
    (stage "Warmup" or "Sample"; info holds the iteration and the current latent).
    ``setup_seconds`` (time spent choosing inits / mass matrix) is added to ``wall_seconds``.
    """
    model.require_single("run_mcmc")
    if num_chains < 1 or num_samples < 1 or warmup_steps < 0:
        raise ValueError("num_chains and num_samples must be >= 1 and warmup_steps >= 0")
    site = model.prior.site
    site_shape = model.prior.init_loc().shape
    if inits is not None:
        if inits.shape != (num_chains, *site_shape):
            raise ValueError(f"inits must have shape {(num_chains, *site_shape)} (num_chains, *site shape), "
                             f"got {tuple(inits.shape)}")
        if init is not None:
            raise ValueError("give either init (one start for every chain) or inits (one per chain), not both")
        starts = inits.detach().clone()
    else:
        start = (model.prior.init_loc() if init is None else init).detach().clone()
        if start.shape != site_shape:
            raise ValueError(f"init must have the site's shape {tuple(site_shape)}, got {tuple(start.shape)}")
        starts = start.expand(num_chains, *site_shape).clone()
    if adapt_mass_matrix is None:
        adapt_mass_matrix = inverse_mass_matrix is None
    t0 = time.perf_counter()
    chains = []
    for chain in range(num_chains):
        hook = None
        if callback is not None:
            def hook(stage: str, i: int, params: dict, chain: int = chain) -> None:
                callback(chain, stage, {"iteration": i, "latent": params.get(site)})
        chains.append(sample_chain(
            model.model, site, starts[chain], num_samples, warmup_steps, seed + chain, model,
            target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
            inverse_mass_matrix=inverse_mass_matrix, adapt_mass_matrix=adapt_mass_matrix,
            progress=progress, hook=hook, extra_init=model.initial_values()))
    latents = torch.stack([c.draws for c in chains])  # (chains, draws, *site)
    return chains_result(model, chains, latents, starts, time.perf_counter() - t0 + setup_seconds, setup_seconds)
