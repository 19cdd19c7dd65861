"""x4 super-resolution of images drawn from the generator itself: what BRGM gains over tuned classical
reconstructions when the prior's generator can make the truth (issue #26's question "is it the generator?").

    OMP_NUM_THREADS=1 nice python benchmarks/generator_ceiling.py --out benchmarks/results/generator_ceiling --shard 0/2
    OMP_NUM_THREADS=1 nice python benchmarks/generator_ceiling.py --out benchmarks/results/generator_ceiling --shard 1/2
    python benchmarks/generator_ceiling.py --out benchmarks/results/generator_ceiling --table-only

The truths are the generator's own images, G(mapping(z)) with z ~ N(0, I) seeded (no truncation), clamped to
[-1, 1]: what real images would be if the generator were perfect.  The problems are those of
``benchmarks/baselines.py`` (``problems``: x4 SR with the bicubic-antialias kernel, noise sigma 0.05 on [-1, 1])
on these images; the classical baselines (bicubic, DeepInverse's TV and wavelet PGD) are tuned on
``--tune-images`` *other* draws over ``baselines.GRIDS`` (best mean PSNR), as they are tuned on training images
for real ones.  BRGM runs as ``brgm reconstruct`` does (the generator's recommended model and feature network,
one image at a time, image i seeded with 10,000 + i):
  - MAP: ``map_estimate`` from w_avg, ``--steps`` Adam steps (mode 0 of the multi-start below, which is
    that very run);
  - best-of-K MAP: ``multistart_containing_map`` from w_avg and K - 1 prior draws (every start climbs to
    the end), the mode with the highest log joint -- MAP's own objective, not the truth, chooses it;
  - the recommended posterior's mean image (``run_method(model, "fullrank")``).
Every image is the point estimate G(w) + E[r | y, w] of the model (its misfit term integrated out).

Shards (``--shard i/n``: images i, i + n, ...) run as separate processes and write their own records file;
the table reads every shard's file made with the same settings.  Resumable: a shard skips the images it holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks import harness  # noqa: E402

BASELINES = ("bicubic", "tv", "wavelet")
BRGM = {"map": "BRGM MAP (CLI defaults)", "best_of_k": "BRGM best-of-K MAP (highest log joint)",
        "fullrank": "BRGM recommended posterior mean"}
NAMES = {"bicubic": "bicubic", "tv": "TV, DeepInverse PGD", "wavelet": "wavelet, DeepInverse PGD", **BRGM}
TASK = "super-resolution"


def generator_draws(generator, num: int, seed: int):
    """``num`` images of the generator, G(mapping(z)) with z ~ N(0, I) from ``seed``, clamped to [-1, 1]:
    (num, C, H, W)."""
    import torch

    z = torch.randn(num, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator.synthesis(generator.mapping(z.to(generator.device))).clamp(-1, 1).cpu()


def tune_baselines(tune_problem: dict) -> dict:
    """Each classical method's setting of ``baselines.GRIDS`` with the best mean PSNR on ``tune_problem``."""
    from benchmarks.baselines import GRIDS, reconstruct, scores

    def mean_psnr(method, setting):
        image = reconstruct(method, TASK, tune_problem, None, setting)
        return scores(image, tune_problem)["psnr"].double().mean().item()

    return {m: max(grid, key=lambda s, m=m: mean_psnr(m, s)) for m, grid in GRIDS[TASK].items()}


def brgm_scores(generator, features, problem: dict, i: int, starts: int, steps: int) -> dict[str, float]:
    """PSNR of BRGM's three estimates on image ``i`` of ``problem``, and their seconds."""
    import torch

    from benchmarks.baselines import scores
    from brgm_pyro.inference import MethodOptions, run_method
    from brgm_pyro.inference.multistart import multistart_containing_map, prior_starts
    from brgm_pyro.models.brgm import brgm_model, default_config, generate
    from brgm_pyro.models.misfit import point_images

    config = default_config(generator, problem["op"], features)
    model = brgm_model(generator, problem["op"], problem["obs"][i], config=config, features=features)
    sub = dict(problem, truth=problem["truth"][i:i + 1])

    def psnr(image: torch.Tensor) -> float:
        return float(scores(image.clamp(-1, 1), sub)["psnr"][0])

    t0 = time.perf_counter()
    modes = multistart_containing_map(model, prior_starts(model, starts, seed=10_000 + i), num_steps=steps)[0]
    images = [point_images(model, generate(generator, model.prior.ws_from_latent(w).unsqueeze(0))).detach()
              for w in (modes.latents[0], modes.best_latent)]
    t1 = time.perf_counter()
    posterior_mean = run_method(model, "fullrank", MethodOptions(steps=steps), seed=10_000 + i)[0].image
    return {"map": psnr(images[0]), "best_of_k": psnr(images[1]), "fullrank": psnr(posterior_mean),
            "best_start": int(modes.start_indices[modes.best]) if modes.start_indices is not None else modes.best,
            "log_joint_gain": float(modes.log_joints[modes.best] - modes.log_joints[0]),
            "seconds_multistart": t1 - t0, "seconds_fullrank": time.perf_counter() - t1}


def table(records: dict[str, dict], chosen: dict[str, str], noise: float = 0.05) -> list[str]:
    from benchmarks.prior_vs_baselines import paired  # PSNR: higher is better

    keys = sorted(records, key=int)
    values = {m: [records[k][m] for k in keys] for m in (*BASELINES, *BRGM)}
    best = max(BASELINES, key=lambda m: harness.mean_se(values[m])[0])
    lines = [f"x4 SR ({TASK}, bicubic-antialias, noise sigma {noise:g}) on {len(keys)} images drawn from the "
             f"generator; PSNR (dB), mean ± standard error; in brackets the paired difference to the best baseline "
             f"({NAMES[best]}) and the images on which BRGM is better.", "",
             "| method | setting | PSNR (dB) |", "|---|---|---:|"]
    for m in (*BASELINES, *BRGM):
        mean, se = harness.mean_se(values[m])
        cell = f"{mean:.2f} ± {se:.2f}"
        if m in BRGM:
            d, dse, wins = paired(values[m], values[best], 1)
            cell += f" ({d:+.2f} ± {dse:.2f}; {wins}/{len(keys)})"
        lines.append(f"| {NAMES[m]} | {chosen.get(m, '-')} | {cell} |")
    d, dse, wins = paired(values["best_of_k"], values["map"], 1)
    gains = [records[k]["log_joint_gain"] for k in keys]
    seconds = {m: harness.mean_se([records[k][f"seconds_{m}"] for k in keys])[0] for m in ("multistart", "fullrank")}
    lines += ["", f"Best-of-K against the single MAP: {d:+.2f} ± {dse:.2f} dB (better on {wins}/{len(keys)}; another "
              f"mode than w_avg's won on {sum(g > 0 for g in gains)}/{len(keys)} images).",
              f"Seconds per image: multi-start MAP {seconds['multistart']:.1f}, "
              f"recommended posterior {seconds['fullrank']:.1f}."]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default=harness.BUNDLED, help="generator name or checkpoint path")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--num-images", type=int, default=40, help="evaluation draws")
    ap.add_argument("--tune-images", type=int, default=10, help="other draws the baselines are tuned on")
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--starts", type=int, default=8, help="K of the best-of-K MAP")
    ap.add_argument("--steps", type=int, default=500, help="Adam steps of every MAP run")
    ap.add_argument("--shard", default="0/1", help="i/n: this process takes images i, i + n, ...")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args(argv)
    try:
        shard, shards = (int(x) for x in args.shard.split("/"))
        if not 0 <= shard < shards:
            raise ValueError
    except ValueError:
        ap.error(f"--shard must be i/n with 0 <= i < n, got {args.shard!r}")
    if args.num_images < 2 or args.tune_images < 1 or args.starts < 1:
        ap.error("--num-images must be >= 2 (a standard error), --tune-images and --starts >= 1")
    from brgm_pyro.baselines import baselines_available

    if not baselines_available(wavelets=True):
        print('benchmarks/generator_ceiling.py needs DeepInverse and ptwt: pip install -e ".[baselines]"',
              file=sys.stderr)
        return 2
    from benchmarks.baselines import describe, problems, reconstruct, scores
    from benchmarks.prior_vs_baselines import generator_identity
    from brgm_pyro.app.features import build_features

    generator = harness.load_prior(args.generator)
    identity = {"generator": generator_identity(args.generator), "num_images": args.num_images,
                "tune_images": args.tune_images, "noise": args.noise, "seed": args.seed,
                "starts": args.starts, "steps": args.steps}
    args.out.mkdir(parents=True, exist_ok=True)
    tune = problems(TASK, generator_draws(generator, args.tune_images, args.seed + 1), args.noise, args.seed + 1)[0]
    evaluation = problems(TASK, generator_draws(generator, args.num_images, args.seed + 2), args.noise,
                          args.seed + 2)[0]
    chosen = tune_baselines(tune)
    baseline_psnr = {m: scores(reconstruct(m, TASK, evaluation, None, chosen.get(m)), evaluation)["psnr"].tolist()
                     for m in BASELINES}
    path = args.out / f"records-{shard}of{shards}.json"
    saved = json.loads(path.read_text()) if path.exists() else {"identity": identity, "records": {}}
    if saved["identity"] != identity:
        raise SystemExit(f"{path} was made with other settings ({saved['identity']}); use another --out")
    records = saved["records"]
    if not args.table_only:
        features = build_features("auto", generator, "cpu")
        env = harness.environment(processes=shards)  # the shards run side by side
        for i in range(shard, args.num_images, shards):
            if str(i) in records:
                continue
            records[str(i)] = {**{m: baseline_psnr[m][i] for m in BASELINES},
                               **brgm_scores(generator, features, evaluation, i, args.starts, args.steps)}
            path.write_text(json.dumps({"identity": identity, "environment": env, "records": records}, indent=1))
            r = records[str(i)]
            print(f"image {i}: " + ", ".join(f"{m} {r[m]:.2f}" for m in (*BASELINES, *BRGM)), flush=True)
    merged, environments = {}, []
    for other in sorted(args.out.glob("records-*of*.json")):
        stored = json.loads(other.read_text())
        if stored["identity"] == identity:
            merged.update(stored["records"])
            environments.append(stored.get("environment", {}))
    missing = args.num_images - len(merged)
    settings = {m: describe(s, m) for m, s in chosen.items()}
    title = f"benchmarks/generator_ceiling.py, generator {args.generator}"
    lines = [harness.header(title, environments[0] if environments else harness.environment()), "",
             *table(merged, settings, args.noise),
             *(["", f"Incomplete: {missing} of {args.num_images} images not measured yet."] if missing else []),
             "", f"Baselines tuned on {args.tune_images} other draws (seed {args.seed + 1}); evaluation draws seed "
             f"{args.seed + 2}."]
    (args.out / "generator_ceiling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
