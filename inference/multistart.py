"""MAP from several starting points at once, and the calibrated posterior method built on it.

In-painting posteriors are multimodal: MAP started at w_avg (Eq. 6) often climbs to a mode far
from the truth, and a Gaussian around that mode cannot cover it.  ``multistart_map`` runs K MAP
optimisations together (one batched generator call per step), from w_avg and K - 1 draws of the
prior, and ranks the modes it reaches by the log joint log p(w*, I).  ``fit_multistart_fullrank``
takes the Laplace approximation at the best mode and fits the full-rank Gaussian guide from it
(as the "vi-fullrank" method does from the single w_avg start).
(Continuing MAP from a mode with a fresh Adam state is not neutral: Adam's first steps move every
coordinate by about ``lr`` and can leave the mode, so the modes are used as the batch leaves them.)

The K optimisations are independent: each latent's Adam update sees only its own gradient,
so the batch equals K separate ``map_estimate`` runs from the same starts in exact arithmetic
(tested on a small generator over a few steps).  Over 500 steps on the bundled generator the
float differences of a batched generator call grow into different paths, so the methods built
here run the w_avg start through ``map_estimate`` itself (``multistart_containing_map``): their
mode's log joint is never below MAP's (issue 25, tested on a batch of images).  With
``keep`` (successive halving) many starts climb ``screen_steps`` and only the best ``keep`` go
on, each ending where it would have alone (tested); on the in-painting benchmark 32 starts
kept to 4 were no better calibrated than 8 (benchmarks/README.md, session 6).
``fit_multistart_flow`` bends the full-rank fit with IAF layers fitted by the ELBO; measured
narrower (worse) than the Gaussian on in-painting, kept for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from pyro import poutine
from tqdm.auto import tqdm

from brgm_pyro.models.brgm import BRGMModel

from .importance import differentiable_log_joint, trace_log_joint
from .guides import ImageStack, LatentDistribution, image_seeds
from .laplace import LaplacePosterior, laplace_approximation
from .map import map_estimate
from .posterior import single_image_model
from .vi import VIPosterior, fit_vi
from .warm_start import fullrank_at


@dataclass
class MultistartResult:
    """The modes reached from each start (K, *site shape), their log joints (K,) float64, the
    starts, and ``best``: the index of the highest log joint; ``fit_multistart_laplace`` adds the
    mode it used (``chosen``) and, when it ranks by evidence, every mode's ``log_evidences``."""

    latents: torch.Tensor
    log_joints: torch.Tensor
    starts: torch.Tensor
    log_evidences: torch.Tensor | None = None  # set when the mode is chosen by its Laplace evidence
    chosen: int | None = None  # the mode the Laplace approximation was taken at
    start_indices: torch.Tensor | None = None  # which of the starts each mode came from (halving keeps some)

    @property
    def best(self) -> int:
        return int(torch.argmax(self.log_joints))

    @property
    def best_latent(self) -> torch.Tensor:
        return self.latents[self.best]


def prior_starts(model: BRGMModel, num_starts: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """w_avg (the prior's mean, MAP's usual start) and ``num_starts - 1`` draws of the prior's
    per-element Gaussian (std multiplied by ``scale``): (num_starts, *site shape)."""
    if num_starts < 1:
        raise ValueError(f"num_starts must be >= 1, got {num_starts}")
    loc, std = model.prior.init_loc().detach(), model.prior.init_scale().detach()
    g = torch.Generator().manual_seed(seed)
    draws = [loc + scale * std * torch.randn(loc.shape, generator=g, dtype=loc.dtype).to(loc)
             for _ in range(num_starts - 1)]
    return torch.stack([loc, *draws])


def multistart_map(model: BRGMModel, starts: torch.Tensor, num_steps: int = 500, lr: float = 0.1,
                   chunk_size: int = 64, keep: int | None = None, screen_steps: int = 100,
                   progress: bool = False) -> MultistartResult:
    """Maximise log p(w | I) from each of ``starts`` (K, *site shape) with Adam (``lr``, the
    authors' 0.1), all K in one batch; returns every mode with its log joint.  With ``keep``
    (successive halving): all K run ``screen_steps`` steps, then only the ``keep`` highest go on
    to ``num_steps``; the result holds those ``keep`` modes (and their starts), each where it
    would have ended alone."""
    model.require_single("multistart_map")
    if starts.ndim < 2 or starts.shape[1:] != model.prior.init_loc().shape:
        raise ValueError(f"starts must have shape (K, *{tuple(model.prior.init_loc().shape)}), "
                         f"got {tuple(starts.shape)}")
    final, kept = _adam_ascent(lambda w: differentiable_log_joint(model, w, chunk_size), starts, num_steps, lr,
                               keep, screen_steps, progress)
    with torch.no_grad():
        log_joints = differentiable_log_joint(model, final, chunk_size)
    return MultistartResult(final, log_joints, starts.detach()[kept], start_indices=kept)


def batched_multistart_map(model: BRGMModel, starts: torch.Tensor, num_steps: int = 500,
                           lr: float = 0.1, keep: int | None = None, screen_steps: int = 100,
                           progress: bool = False) -> list[MultistartResult]:
    """``multistart_map`` for a batched model of B images: ``starts`` (K, B, *site shape), all
    K x B optimisations in one generator batch per step (the images' plate broadcasts over the
    starts); one ``MultistartResult`` per image, equal to ``multistart_map`` of that image alone."""
    if not model.batched:
        raise ValueError("batched_multistart_map needs a batched model (use multistart_map)")
    shape = (model.num_images, *model.prior.init_loc().shape)
    if starts.ndim < 3 or starts.shape[1:] != shape:
        raise ValueError(f"starts must have shape (K, *{shape}), got {tuple(starts.shape)}")
    final, kept = _adam_ascent(lambda w: _plate_log_joint(model, w), starts, num_steps, lr, keep, screen_steps,
                               progress)
    with torch.no_grad():
        log_joints = _plate_log_joint(model, final)  # (K or keep, B)
    if kept.ndim == 1:
        kept = kept.unsqueeze(1).expand(-1, model.num_images)
    return [MultistartResult(final[:, b], log_joints[:, b], starts[kept[:, b], b].detach(), start_indices=kept[:, b])
            for b in range(model.num_images)]


def _adam_ascent(log_joint_fn, starts: torch.Tensor, num_steps: int, lr: float,
                 keep: int | None = None, screen_steps: int = 0,
                 progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on -sum(log_joint_fn(latents)) from ``starts`` (K, ...): every latent follows its own
    gradient.  With ``keep``: after ``screen_steps`` steps only the ``keep`` latents with the
    highest log joint (per image when log_joint_fn returns (K, B)) go on, with their Adam state,
    so each kept latent ends where it would have alone.  Returns the final latents (K or keep
    first) and the indices of the kept starts (keep,) or (keep, B).  ``progress``: a bar over the steps."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    num = starts.shape[0]
    if keep is not None and not (1 <= keep <= num and 1 <= screen_steps < num_steps):
        raise ValueError(f"keep must be in 1..{num} (the starts) and screen_steps in 1..{num_steps - 1} "
                         f"(num_steps - 1), got keep={keep}, screen_steps={screen_steps}")
    latents = starts.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([latents], lr=lr)
    kept = torch.arange(num)
    for step in tqdm(range(num_steps), disable=not progress, desc=f"multi-start MAP ({num} starts)", leave=False):
        if keep is not None and step == screen_steps:
            latents, optimiser, kept = _keep_best(log_joint_fn, latents, optimiser, keep, lr)
        optimiser.zero_grad()
        loss = -log_joint_fn(latents).sum()
        loss.backward()
        optimiser.step()
    return latents.detach(), kept


def _keep_best(log_joint_fn, latents: torch.Tensor, optimiser: torch.optim.Adam, keep: int, lr: float):
    """The ``keep`` latents of highest log joint (along dim 0, per image for (K, B) scores), with
    a new Adam optimiser that carries on their moment estimates and step count."""
    with torch.no_grad():
        scores = log_joint_fn(latents)
    kept = torch.topk(scores, keep, dim=0).indices  # (keep,) or (keep, B)

    def select(t: torch.Tensor) -> torch.Tensor:
        if kept.ndim == 1:
            return t[kept]
        return t[kept, torch.arange(kept.shape[1]).expand_as(kept)]

    state = optimiser.state[latents]
    chosen = select(latents.detach()).clone().requires_grad_(True)
    new = torch.optim.Adam([chosen], lr=lr)
    new.state[chosen] = {key: (select(v).clone() if torch.is_tensor(v) and v.shape == latents.shape else v)
                         for key, v in state.items()}
    return chosen, new, kept


def _plate_log_joint(model: BRGMModel, latents: torch.Tensor) -> torch.Tensor:
    """log p(w, I) of a batched model at ``latents`` (K, B, *site shape): (K, B) float64."""
    value = latents.to(model.observation.device)
    trace = poutine.trace(poutine.condition(model.model, data={model.prior.site: value})).get_trace()
    return trace_log_joint(trace, latents.shape[:2])


MODE_SELECTIONS = ("log-joint", "evidence")


def laplace_log_evidence(log_joint: float, laplace: LatentDistribution) -> float:
    """The Laplace estimate of a mode's share of log p(I): log p(w*, I) + (d/2) log 2 pi +
    (1/2) log det Sigma, i.e. the log joint plus the Gaussian's entropy minus d/2.  Ranks modes by
    the posterior mass around them rather than by their height."""
    d = laplace.distribution
    dim = d.event_shape.numel()
    return float(log_joint) + float(d.entropy()) - 0.5 * dim


def multistart_containing_map(model: BRGMModel, starts: torch.Tensor, num_steps: int = 500, lr: float = 0.1,
                              keep: int | None = None, screen_steps: int = 100,
                              progress: bool = False) -> list[MultistartResult]:
    """Multi-start MAP whose first start *is* the single run: start 0 (``starts[0]``, w_avg from
    ``prior_starts``) is optimised by ``map_estimate`` itself (its AutoDelta guide, Pyro's Adam,
    the same steps and learning rate), the other starts together in one batch
    (``multistart_map`` / ``batched_multistart_map``).  So the mode ranked first is never below
    ``map_estimate(model, num_steps, lr)``'s log joint: the batched path equals separate runs in
    exact arithmetic, but over 500 steps on a real generator float differences of a batched
    generator call grow into a different path (issue 25: 4 of 40 fits ended below plain MAP).

    ``starts``: (K, *site shape), or (K, B, *site shape) for a batched model of B images.
    ``keep`` (successive halving): start 0 always runs to the end; of the other K - 1 the best
    ``keep - 1`` after ``screen_steps`` go on (``keep`` 1: MAP alone).  One ``MultistartResult``
    per image (a list of one for a single-image model), modes in the order [start 0, others...],
    ``start_indices`` naming each mode's start.  ``progress``: bars for the MAP steps."""
    num = starts.shape[0]
    if keep is not None and not 1 <= keep <= num:
        raise ValueError(f"keep must be in 1..{num} (the starts), got {keep}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    single = map_estimate(model, num_steps=num_steps, lr=lr, init=starts[0], progress=progress)
    others = starts[1:]
    others_keep = None if keep is None else keep - 1
    if others.shape[0] == 0 or others_keep == 0:
        rest = None
    else:
        if others_keep is not None and others_keep >= others.shape[0]:
            others_keep = None  # every other start is kept: no screening
        if model.batched:
            rest = batched_multistart_map(model, others, num_steps, lr, keep=others_keep, screen_steps=screen_steps,
                                          progress=progress)
        else:
            rest = [multistart_map(model, others, num_steps, lr, keep=others_keep, screen_steps=screen_steps,
                                   progress=progress)]
    with torch.no_grad():
        if model.batched:
            first_lj = _plate_log_joint(model, single.latent.unsqueeze(0))[0]  # (B,)
        else:
            first_lj = differentiable_log_joint(model, single.latent.unsqueeze(0))  # (1,)
    out = []
    for b in range(model.num_images):
        latent = single.latent[b] if model.batched else single.latent
        start = starts[0, b] if model.batched else starts[0]
        latents, log_joints = [latent.detach()], [first_lj[b:b + 1]]
        chosen_starts, indices = [start.detach()], [torch.zeros(1, dtype=torch.long)]
        if rest is not None:
            r = rest[b]
            latents.append(r.latents)
            log_joints.append(r.log_joints)
            chosen_starts.append(r.starts)
            indices.append(r.start_indices + 1)
        out.append(MultistartResult(torch.cat([latents[0].unsqueeze(0), *latents[1:]]), torch.cat(log_joints),
                                    torch.cat([chosen_starts[0].unsqueeze(0), *chosen_starts[1:]]),
                                    start_indices=torch.cat(indices)))
    return out


def fit_multistart_laplace(model: BRGMModel, num_starts: int = 8, num_steps: int = 500,
                           seed: int | Sequence[int] = 0, select: str = "log-joint",
                           keep: int | None = None, screen_steps: int = 100, progress: bool = False,
                           ) -> tuple[LaplacePosterior, list[MultistartResult]]:
    """``multistart_map`` from ``prior_starts`` (``num_steps`` each, the authors' 500 by default)
    and the Laplace approximation at the chosen mode: ``select`` "log-joint" (the highest
    log p(w*, I)) or "evidence" (the highest ``laplace_log_evidence``: a Laplace approximation at
    every mode, the one with the most mass; recorded in ``MultistartResult.log_evidences``).
    A batched model: the same for each image on its own (``seed``: one for every image, or one
    per image), all images' starts optimised in one batch (``batched_multistart_map``), Laplace
    approximations stacked per image (an ``ImageStack``); one ``MultistartResult`` per image.
    ``keep`` / ``screen_steps``: successive halving (``multistart_map``): many starts screened
    for ``screen_steps``, the best ``keep`` climbed to the end.  The w_avg start is always
    ``map_estimate``'s own run (``multistart_containing_map``; with ``keep`` it is one of the kept).
    ``progress``: bars for the MAP steps and the Laplace approximations."""
    if select not in MODE_SELECTIONS:
        raise ValueError(f"select must be one of {MODE_SELECTIONS}, got {select!r}")
    seeds = image_seeds(model, seed)
    if not model.batched:
        singles = [model]
        starts = prior_starts(model, num_starts, seeds[0])
    else:
        singles = [single_image_model(model, b) for b in range(model.num_images)]
        starts = torch.stack([prior_starts(single, num_starts, s) for single, s in zip(singles, seeds)], 1)
    modes = multistart_containing_map(model, starts, num_steps=num_steps, keep=keep, screen_steps=screen_steps,
                                     progress=progress)
    chosen = [_choose_mode(single, m, select) for single, m in
              tqdm(zip(singles, modes), total=len(singles), disable=not progress, desc="Laplace", leave=False)]
    q = chosen[0] if not model.batched else ImageStack(chosen)
    return LaplacePosterior(model, q), modes


def _choose_mode(model: BRGMModel, modes: MultistartResult, select: str) -> LatentDistribution:
    if select == "log-joint":
        modes.chosen = modes.best
        return laplace_approximation(model, modes.best_latent)
    approximations = [laplace_approximation(model, latent) for latent in modes.latents]
    modes.log_evidences = torch.tensor([laplace_log_evidence(lj, q) for lj, q in
                                        zip(modes.log_joints.tolist(), approximations)], dtype=torch.float64)
    modes.chosen = int(torch.argmax(modes.log_evidences))
    return approximations[modes.chosen]


def fit_multistart_fullrank(model: BRGMModel, num_starts: int = 8, num_steps: int = 500, vi_steps: int = 200,
                            lr: float = 0.002, num_particles: int = 8,
                            seed: int | Sequence[int] = 0, select: str = "log-joint",
                            keep: int | None = None, screen_steps: int = 100,
                            progress: bool = False) -> VIPosterior:
    """The recommended posterior's fit: ``fit_multistart_laplace``, then the full-rank Gaussian guide
    (Eq. 7) fitted from that Laplace approximation (``warm_start.fullrank_at``: ``vi_steps`` Adam
    steps, ``lr`` decayed 10x, ``num_particles`` per step; a batched model: one batched fit, each
    image seeded as if alone: equal to separate fits).  ``.diagnostics`` records every mode's
    log joint (and Laplace evidence with ``select="evidence"``) and which start was used (lists
    over the images for a batched model); ``.modes`` the ``MultistartResult`` of each image (its
    mode 0 is ``map_estimate``'s result from w_avg).  Unwidened: ``recommended.fit_recommended_posterior``
    is this fit widened by its interval scale.  ``progress``: a bar for each phase (MAP steps,
    Laplace, VI steps)."""
    seeds = image_seeds(model, seed)
    laplace, modes = fit_multistart_laplace(model, num_starts, num_steps, seeds, select=select, keep=keep,
                                            screen_steps=screen_steps, progress=progress)
    posterior = fullrank_at(model, laplace, seeds, vi_steps=vi_steps, lr=lr, num_particles=num_particles,
                            progress=progress)
    per_image = [{"mode_log_joints": m.log_joints.tolist(), "best_start": int(m.start_indices[m.chosen]),
                  **({"mode_log_evidences": m.log_evidences.tolist()} if m.log_evidences is not None else {})}
                 for m in modes]
    posterior.diagnostics = ({key: [d[key] for d in per_image] for key in per_image[0]} if model.batched
                             else per_image[0])
    posterior.modes = modes  # per image: every mode (mode 0 is map_estimate's own result), its log joint
    return posterior


def fit_multistart_flow(model: BRGMModel, num_starts: int = 8, num_steps: int = 500, flow_steps: int = 200,
                        lr: float = 0.002, num_flows: int = 2, num_particles: int = 8,
                        seed: int = 0, **fullrank_options) -> VIPosterior:
    """``fit_multistart_fullrank``, then inverse autoregressive flows on top of its Gaussian
    (``FlowGuide`` with ``init_scale_tril``: w = loc + C (d * T(z)), starting exactly at the
    full-rank fit) fitted by the ELBO for ``flow_steps`` Adam steps (``lr`` decayed 10x,
    ``num_particles`` per step): a posterior that can bend along the curved set of latents the
    observation allows, which a Gaussian cannot.  One image at a time."""
    model.require_single("fit_multistart_flow")
    gaussian = fit_multistart_fullrank(model, num_starts, num_steps, seed=seed, **fullrank_options)
    q = gaussian.q.distribution
    posterior = fit_vi(model, guide="flow", init_loc=q.loc.reshape(gaussian.q.shape),
                       init_scale_tril=q.scale_tril, num_flows=num_flows, num_steps=flow_steps, lr=lr,
                       lr_decay=0.1 ** (1 / flow_steps), num_particles=num_particles, seed=seed, progress=False)
    posterior.diagnostics = {**gaussian.diagnostics, "flow_steps": flow_steps}
    return posterior
