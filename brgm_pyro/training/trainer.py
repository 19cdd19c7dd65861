"""Training a StyleGAN2 generator: non-saturating logistic loss, lazy R1, style mixing, EMA of G.

The recipe follows the StyleGAN2 paper (Karras et al., 2020) at small scale: Adam
(lr 0.0025, betas (0, 0.99)), R1 penalty on real images every ``r1_interval`` discriminator
steps (lazy regularisation, with the learning rate and betas of D corrected accordingly),
style mixing with probability 0.9, and an exponential moving average of G whose half-life is
``ema_kimg`` thousand images (ramped up over the first iterations).  Path-length
regularisation is left out.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..generators.native_format import save_generator
from ..generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from ..io import save_grid
from .data import FASHION_MNIST_DIR, load_training_images
from .discriminator import Discriminator


@dataclass
class TrainingConfig:
    """Everything that defines a training run (saved next to its checkpoints)."""

    data: str = str(FASHION_MNIST_DIR)
    out_dir: str = "runs/fashion-mnist-32"
    resolution: int = 32
    channels: int = 1
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 2
    channel_base: int = 2048
    channel_max: int = 64
    d_channel_base: int = 2048
    d_channel_max: int = 64
    batch_size: int = 32
    iterations: int = 20_000
    max_minutes: float | None = None
    lr: float = 0.0025
    r1_gamma: float = 0.01
    r1_interval: int = 16
    style_mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    mirror: bool = True
    seed: int = 0
    snapshot_every: int = 1000
    device: str = "cpu"

    # Fields that may differ between the sessions of one run (how long, where, how often to save);
    # every other field defines the run and must match the checkpoint on resume.
    SESSION_FIELDS = ("data", "out_dir", "iterations", "max_minutes", "snapshot_every", "device")

    def generator_config(self) -> StyleGAN2Config:
        return StyleGAN2Config(
            img_resolution=self.resolution, img_channels=self.channels, z_dim=self.z_dim,
            w_dim=self.w_dim, mapping_layers=self.mapping_layers,
            channel_base=self.channel_base, channel_max=self.channel_max,
        )


@dataclass
class TrainingState:
    """What a run has produced so far."""

    G: StyleGAN2Generator
    G_ema: StyleGAN2Generator
    D: Discriminator
    iteration: int = 0
    images_seen: int = 0
    wall_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def _mixed_ws(G: StyleGAN2Generator, z: torch.Tensor, prob: float, update_w_avg: bool) -> torch.Tensor:
    """Map z to W+, and with probability ``prob`` switch to a second latent from a random layer on."""
    ws = G.mapping(z, update_w_avg=update_w_avg)
    if prob > 0 and torch.rand([]).item() < prob:
        cutoff = int(torch.randint(1, G.num_ws, []).item())
        ws2 = G.mapping(torch.randn_like(z))
        ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
    return ws


def _ema_update(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    with torch.no_grad():
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)


def save_checkpoint(state: TrainingState, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
                    config: TrainingConfig, path: Path) -> None:
    """Write a resumable checkpoint (tensors and plain Python values only)."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "format": "brgm-pyro/training-checkpoint", "version": 1,
            "config": asdict(config), "G": state.G.state_dict(), "G_ema": state.G_ema.state_dict(),
            "D": state.D.state_dict(), "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
            "iteration": state.iteration, "images_seen": state.images_seen,
            "wall_seconds": state.wall_seconds, "history": state.history,
            "torch_rng": torch.get_rng_state(),
            **({"cuda_rng": torch.cuda.get_rng_state()} if next(state.G.parameters()).is_cuda else {}),
        },
        tmp,
    )
    tmp.replace(path)


def check_resume_config(config: TrainingConfig, saved: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming every run-defining field of ``config`` that differs from the
    checkpoint's ``saved`` config (resuming with another learning rate, width, EMA... would silently
    mix two runs: the optimiser state even restores the old learning rate)."""
    current = asdict(config)
    differ = [f"{k}: checkpoint {saved.get(k)!r}, now {v!r}" for k, v in current.items()
              if k not in TrainingConfig.SESSION_FIELDS and saved.get(k) != v]
    if differ:
        raise ValueError("cannot resume: the run's options differ from its checkpoint's (" + "; ".join(differ)
                         + "); pass the checkpoint's options, or start afresh in another folder")


def train_generator(
    config: TrainingConfig,
    resume: bool = True,
    progress: bool = True,
    images: torch.Tensor | None = None,
    callback: Callable[[TrainingState], None] | None = None,
) -> TrainingState:
    """Train a StyleGAN2 generator on ``config.data`` (or on ``images``, (N, C, R, R) in [-1, 1]).

    Writes ``checkpoint.pt`` (resumable), ``samples_XXXXXX.png`` grids, ``log.jsonl`` and
    ``training_config.json`` to ``config.out_dir``; resumes from the checkpoint when present (the
    options that define the run must match it, see ``check_resume_config``).  A run stopped and
    resumed on the CPU continues exactly as if it had not stopped (tested): the checkpoint holds both
    networks, both optimisers, the EMA, the counters and the random-number state (on a GPU also the
    CUDA generator's, though GPU kernels need not be bitwise reproducible).  Tensors are loaded onto
    ``config.device``, so a CPU checkpoint can continue on a GPU (not tested here: no GPU).
    """
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    if images is None:
        images = load_training_images(config.data, config.resolution, config.channels)
    expected = (config.channels, config.resolution, config.resolution)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"training images must have shape (N, {expected[0]}, {expected[1]}, {expected[2]}), "
                         f"got {tuple(images.shape)}")
    images = images.to(device)

    G = StyleGAN2Generator(config.generator_config(), noise_mode="random").to(device).train()
    D = Discriminator(config.resolution, config.channels, config.d_channel_base, config.d_channel_max).to(device)
    G_ema = copy.deepcopy(G).eval()
    G_ema.noise_mode = "const"
    opt_G = torch.optim.Adam(G.parameters(), lr=config.lr, betas=(0.0, 0.99), eps=1e-8)
    ratio = config.r1_interval / (config.r1_interval + 1)  # lazy regularisation correction
    opt_D = torch.optim.Adam(D.parameters(), lr=config.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)
    state = TrainingState(G=G, G_ema=G_ema, D=D)

    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        check_resume_config(config, ckpt["config"])
        G.load_state_dict(ckpt["G"])
        G_ema.load_state_dict(ckpt["G_ema"])
        D.load_state_dict(ckpt["D"])
        opt_G.load_state_dict(ckpt["opt_G"])
        opt_D.load_state_dict(ckpt["opt_D"])
        state.iteration, state.images_seen = ckpt["iteration"], ckpt["images_seen"]
        state.wall_seconds, state.history = ckpt["wall_seconds"], ckpt["history"]
        torch.set_rng_state(ckpt["torch_rng"].cpu())  # map_location may have moved it to the GPU
        if device.type == "cuda" and "cuda_rng" in ckpt:
            torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu())
    (out / "training_config.json").write_text(json.dumps(asdict(config), indent=2))

    grid_z = torch.randn(64, config.z_dim, generator=torch.Generator().manual_seed(123)).to(device)
    start_time = time.time() - state.wall_seconds
    deadline = None if config.max_minutes is None else time.time() + 60 * config.max_minutes
    batch = config.batch_size
    bar = tqdm(total=config.iterations, initial=state.iteration, disable=not progress, desc="train G")
    log = open(out / "log.jsonl", "a")
    try:
        while state.iteration < config.iterations:
            if deadline is not None and time.time() > deadline:
                break
            it = state.iteration
            # --- generator step: non-saturating logistic loss softplus(-D(G(z))).
            G.requires_grad_(True)
            D.requires_grad_(False)
            z = torch.randn(batch, config.z_dim, device=device)
            fake = G.synthesis(_mixed_ws(G, z, config.style_mixing_prob, update_w_avg=True))
            loss_G = F.softplus(-D(fake)).mean()
            opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            opt_G.step()

            # --- discriminator step: softplus(D(fake)) + softplus(-D(real)) (+ lazy R1).
            G.requires_grad_(False)
            D.requires_grad_(True)
            with torch.no_grad():
                z = torch.randn(batch, config.z_dim, device=device)
                fake = G.synthesis(_mixed_ws(G, z, config.style_mixing_prob, update_w_avg=False))
            real = images[torch.randint(0, images.shape[0], (batch,), device=device)]
            if config.mirror:
                flip = torch.rand(batch, 1, 1, 1, device=device) < 0.5
                real = torch.where(flip, real.flip(-1), real)
            do_r1 = config.r1_gamma > 0 and it % config.r1_interval == 0
            real = real.detach().requires_grad_(do_r1)
            real_logits = D(real)
            loss_D = F.softplus(D(fake)).mean() + F.softplus(-real_logits).mean()
            r1 = torch.zeros([])
            if do_r1:
                (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
                r1 = grad.square().sum(dim=[1, 2, 3]).mean()
                loss_D = loss_D + r1 * (config.r1_gamma / 2) * config.r1_interval
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            opt_D.step()

            # --- exponential moving average of G.
            state.images_seen += batch
            ema_nimg = config.ema_kimg * 1000
            if config.ema_rampup is not None:
                ema_nimg = min(ema_nimg, state.images_seen * config.ema_rampup)
            _ema_update(G_ema, G, 0.5 ** (batch / max(ema_nimg, 1e-8)))

            state.iteration += 1
            state.wall_seconds = time.time() - start_time
            bar.update(1)
            if state.iteration % 50 == 0 or state.iteration == 1:
                record = {"iteration": state.iteration, "loss_G": loss_G.item(), "loss_D": loss_D.item(),
                          "r1": r1.item(), "wall_seconds": round(state.wall_seconds, 1)}
                state.history.append(record)
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss_G=f"{record['loss_G']:.3f}", loss_D=f"{record['loss_D']:.3f}")
            if state.iteration % config.snapshot_every == 0 or state.iteration == config.iterations:
                save_sample_grid(G_ema, grid_z, out / f"samples_{state.iteration:06d}.png")
                save_checkpoint(state, opt_G, opt_D, config, ckpt_path)
                if callback is not None:
                    callback(state)
    finally:
        bar.close()
        log.close()
    save_checkpoint(state, opt_G, opt_D, config, ckpt_path)
    G.requires_grad_(True)
    D.requires_grad_(True)
    return state


@torch.no_grad()
def save_sample_grid(G: StyleGAN2Generator, z: torch.Tensor, path: Path) -> None:
    """Save G(z) as a square-ish image grid (PNG), images edge to edge."""
    imgs = G(z, noise_mode="const").clamp(-1, 1).cpu()
    save_grid(imgs, path, nrow=math.ceil(math.sqrt(imgs.shape[0])), padding=0, pad_value=-1.0)


def export_generator(checkpoint: str | Path, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write the EMA generator of a training checkpoint in the project's own format."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config = TrainingConfig(**ckpt["config"])
    G = StyleGAN2Generator(config.generator_config())
    G.load_state_dict(ckpt["G_ema"])
    meta = {"iterations": ckpt["iteration"], "images_seen": ckpt["images_seen"],
            "wall_seconds": ckpt["wall_seconds"], "training_config": ckpt["config"]}
    meta.update(metadata or {})
    save_generator(G, path, metadata=meta)
