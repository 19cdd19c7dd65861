"""NUTS on the BRGM model: the gold standard that MAP and VI are compared against.

Every gradient evaluation runs the generator, so this is for small generators (the bundled
32x32 model, the linear test generator); on a StyleGAN2 at 1024^2 it is impractically slow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_value

from brgm_pyro.models.brgm import BRGMModel

from .posterior import Posterior


@dataclass
class MCMCResult:
    """Draws of the latent site (chains, draws, *site shape), divergences (chains, draws), the
    sampler, and ``parameters``: draws (chains, draws) of the model's other latent sites (unknown
    noise levels and corruption parameters; empty for the paper's model)."""

    latents: torch.Tensor
    divergences: torch.Tensor
    mcmc: MCMC
    wall_seconds: float
    posterior: Posterior
    parameters: dict[str, torch.Tensor] = field(default_factory=dict)


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
) -> MCMCResult:
    """Sample p(w | I) with NUTS, chains run one after another, each started at ``init`` (w_avg).

    ``max_tree_depth`` bounds the cost per draw (2^depth generator evaluations at most).
    ``callback(chain, stage, info)`` is called after every transition (stage "Warmup" or "Sample";
    info holds the iteration and the current latent).  Pyro's progress bar shows step size and
    acceptance rate (there is no loss to show).
    """
    from ._runner import inference_scope

    model.require_single("run_mcmc")

    site = model.prior.site
    start = (model.prior.init_loc() if init is None else init).detach().clone()
    chains, divergences, extra_draws = [], [], []
    t0 = time.perf_counter()
    mcmc = None
    for chain in range(num_chains):
        with inference_scope(model, seed + chain):
            kernel = NUTS(model.model, target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                          init_strategy=init_to_value(values={site: start, **model.initial_values()}),
                          jit_compile=False)
            def hook(_kernel, params, stage, i, chain=chain):  # noqa: ANN001 - Pyro's hook signature
                callback(chain, stage, {"iteration": i, "latent": params.get(site)})
            mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=1,
                        disable_progbar=not progress, hook_fn=hook if callback is not None else None)
            mcmc.run()
            chains.append(mcmc.get_samples()[site].detach())
            extra_draws.append({k: v.detach() for k, v in mcmc.get_samples().items() if k != site})
            extra = mcmc.diagnostics()
            div = torch.zeros(num_samples, dtype=torch.bool)
            idx = extra.get("divergences", {}).get("chain 0", [])
            if len(idx):
                div[torch.as_tensor(idx, dtype=torch.long)] = True  # indices of divergent draws
            divergences.append(div)
    latents = torch.stack(chains)  # (chains, draws, *site)
    flat = latents.reshape(-1, *latents.shape[2:])

    def sample_latents(n: int) -> torch.Tensor:
        return flat[torch.randint(0, flat.shape[0], (n,))].to(start.device)

    posterior = Posterior(model, sample_latents, flat.mean(0).to(start.device))
    parameters = {k: torch.stack([d[k] for d in extra_draws]) for k in extra_draws[0]} if extra_draws else {}
    return MCMCResult(latents, torch.stack(divergences), mcmc, time.perf_counter() - t0, posterior, parameters)
