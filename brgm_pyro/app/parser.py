"""The ``brgm`` command line's parser: every command, flag, default and help text.

Standard library only (the names it offers come from ``brgm_pyro.choices``), so that
``brgm --help`` and ``brgm COMMAND --help`` answer without importing torch.  What the parsed
arguments mean is resolved once, in ``brgm_pyro.app.settings``; the commands run in
``brgm_pyro.app.commands``.
"""

from __future__ import annotations

import argparse
import math

from ..assets import FASHION_MNIST_DIR
from ..choices import BLIND_CHOICES, FEATURE_CHOICES, SR_KERNELS, TASKS

def _add_model_options(p: argparse.ArgumentParser, steps: int = 500) -> None:
    p.add_argument("--generator", default="fashion-mnist-32",
                   help="bundled name or checkpoint path (.pkl from NVIDIA / the BRGM authors, rosinality .pt, "
                        "brgm-pyro .pt); default: %(default)s")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--features", default="auto", choices=FEATURE_CHOICES,
                   help="perceptual feature network (auto: the generator's own, else LPIPS-VGG)")
    p.add_argument("--steps", type=int, default=steps, help="optimisation steps (default: %(default)s)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the methods' starts and draws (default: %(default)s); a data-set run "
                        "derives each image's seed from it and the image's index")
    p.add_argument("--out", default="brgm-out", help="output folder (default: %(default)s); an existing folder "
                   "with files is refused unless --overwrite is given")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing --out folder, first removing the files a previous run wrote there")
    p.add_argument("--no-progress", action="store_true",
                   help="print no progress bars or phase lines (for logs and scripts)")
    g = p.add_argument_group("weights (default: the generator's recommended balance for the task, else the authors' "
                             "released one)")
    g.add_argument("--sigma-pixel", type=float)
    g.add_argument("--sigma-perceptual", type=float)
    g.add_argument("--kappa", type=float, help="von Mises concentration of the colinearity prior (0: off)")
    g.add_argument("--lambda-pixel", type=float, help="paper's Eq. 6 weight: sigma_pixel = lambda^-1/2")
    g.add_argument("--lambda-perceptual", type=float, help="paper's Eq. 6 weight: sigma_perceptual = lambda^-1/2")
    g.add_argument("--lambda-colin", type=float, help="paper's Eq. 6 weight: kappa = lambda_colin / 2")
    g.add_argument("--layer-correlation", type=float,
                   help="correlation rho in [0, 1) of the Gaussian prior between the layers of W+ (each layer keeps "
                        "N(mu, sigma^2); 0: independent layers, the paper's prior; models.LayerCorrelatedPrior)")
    g.add_argument("--misfit-scale", type=misfit_scale_arg, default=None,
                   help="tau of the generator's misfit x = G(w) + r, r ~ N(0, tau^2) per pixel, integrated out of "
                        "the pixel likelihood (a number, 'learn', or 'none': off); draws of the image then include r "
                        "and the MAP image is G(w*) + E[r | y, w*] (default: the generator's recommendation for the "
                        "setting, else off)")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def misfit_scale_arg(text: str) -> float | str:
    """argparse type of --misfit-scale: 'learn', 'none' (off, also where the generator recommends one) or a
    finite number > 0."""
    return text if text in ("learn", "none") else positive_float(text)


def _add_interval_scale_option(p: argparse.ArgumentParser, default: float | None, default_help: str) -> None:
    p.add_argument("--interval-scale", type=positive_float, default=default,
                   help="widen the fullrank posterior to N(mu, s^2 Sigma): the simulation-calibrated scale s "
                        "(`brgm calibrate --fit-interval-scale` fits it for your generator and corruption); "
                        f"{default_help}")


def _add_draw_options(p: argparse.ArgumentParser) -> None:
    """--samples (draws written) and --mean-draws (draws of w behind the mean image and std map); the defaults
    are Settings' and MethodOptions' (a test holds them equal; the parser stays free of torch imports)."""
    p.add_argument("--samples", type=int, default=64, help="posterior samples to draw (default: %(default)s)")
    p.add_argument("--mean-draws", type=int, default=512, help="draws of w for the posterior mean image and std "
                   "map (the generator's misfit is integrated out, not drawn; fewer for a slow generator) "
                   "(default: %(default)s)")


def _add_kernel_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--kernel", default=default, choices=SR_KERNELS,
                   help="super-resolution down-sampling kernel (default: %(default)s, the kernel the fullrank "
                        "posterior was calibrated with; 'bicubic' is the authors' release: without antialiasing "
                        "each low-resolution pixel samples the image at one point, so detail finer than the "
                        "factor aliases)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``brgm COMMAND: error: ...``, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="brgm", description="Bayesian image reconstruction with deep generative priors (BRGM)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("info", help="print versions and whether a GPU is present")

    p = sub.add_parser(
        "train-generator",
        help="train a StyleGAN2 generator on IDX files or a folder of images",
        description="Train a StyleGAN2 generator (non-saturating loss, lazy R1, style mixing, EMA). "
        "Resumes from OUT/checkpoint.pt when it exists. The defaults reproduce the bundled "
        "fashion-mnist-32 model.",
    )
    p.add_argument("--data", default=str(FASHION_MNIST_DIR), help="IDX folder or image folder (default: %(default)s)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, sample grids, log")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--z-dim", type=int, default=64)
    p.add_argument("--w-dim", type=int, default=64)
    p.add_argument("--mapping-layers", type=int, default=2)
    p.add_argument("--channel-base", type=int, default=2048)
    p.add_argument("--channel-max", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--iterations", type=int, default=20_000)
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall time")
    p.add_argument("--lr", type=float, default=0.0025)
    p.add_argument("--r1-gamma", type=float, default=0.01)
    p.add_argument("--r1-interval", type=int, default=16, help="lazy R1 every this many D steps (default: %(default)s)")
    p.add_argument("--style-mixing", type=float, default=0.9, help="style-mixing probability (default: %(default)s)")
    p.add_argument("--ema-kimg", type=float, default=10.0,
                   help="EMA half-life of G in thousands of images (default: %(default)s)")
    p.add_argument("--ema-rampup", type=float, default=0.05,
                   help="cap the EMA half-life at this fraction of the images seen; 0 = no ramp (default: %(default)s)")
    p.add_argument("--d-channel-base", type=int, default=2048)
    p.add_argument("--d-channel-max", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snapshot-every", type=int, default=500)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.add_argument("--no-progress", action="store_true", help="print no progress bar")
    p.add_argument("--export", help="also write the EMA generator to this .pt file (project format)")

    p = sub.add_parser("demo", help="x4 super-resolution and in-painting of a bundled test image with MAP and "
                       "the fullrank posterior",
                       description="The main job: on the bundled generator and a bundled Fashion-MNIST test image, "
                       "run x4 super-resolution and in-painting with MAP and the recommended posterior (fullrank: "
                       "multi-start MAP, Laplace, full-rank Gaussian VI); write reconstructions, posterior samples, "
                       "std maps, a summary figure and metrics.json.")
    _add_model_options(p)
    p.set_defaults(out="brgm-demo")
    p.add_argument("--image-index", type=int, default=0, help="which of the 100 bundled test images (0..99)")
    p.add_argument("--mask-id", type=int, default=0, help="standard mask for the in-painting row (0..6)")
    _add_draw_options(p)
    _add_interval_scale_option(p, None, "default: 1 where the generator's metadata records real-image interval "
                               "factors for a row's setting (interval_factors: the fullrank intervals are then "
                               "rescaled per level and written as fullrank_interval<level>_lower/upper.png), else "
                               "the scale it records (interval_scales), else 1; giving the flag turns the "
                               "factors off")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS, else one "
                   "for a small generator such as the bundled one, else all cores; see the docs' speed page)")
    p.add_argument("--processes", type=int, default=None, help="rows solved at once, each in its own process "
                   "(default: as many as the cores hold at the run's thread count, 1 on a GPU; the outputs are the "
                   "same numbers either way)")
    _add_kernel_option(p, "bicubic-antialias")

    p = sub.add_parser("reconstruct", help="reconstruct images (MAP / VI / MCMC): one, several, a folder, a glob",
                       description="Reconstruct IMAGE: by default IMAGE is the clean image, corrupted here (metrics "
                       "against it are reported); with --observed it is the corrupted observation itself. One image "
                       "file writes its outputs into --out; several images, a folder, a glob or "
                       "--bundled-test-images write one subfolder per image and summary.csv / summary.json. "
                       "Images are prepared as the generator declares (the bundled one: 28x28 padded to 32x32 with "
                       "black); an image of another size is refused, never stretched; colour is converted to "
                       "grayscale for a grayscale generator; each change is printed.")
    p.add_argument("image", nargs="*", help="PNG / JPEG / .npy images, folders or glob patterns (the generator's "
                   "size or the size it declares, e.g. 28x28 or 32x32 for the bundled one; square, or use "
                   "--center-crop; 8- or 16-bit, at most 8192x8192 pixels, no transparent pixels)")
    p.add_argument("--center-crop", action="store_true", help="crop a non-square image to its central square")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--factor", type=int, default=None, help="super-resolution factor (default 4)")
    p.add_argument("--mask", default=None, help="in-painting mask image, white (1) = observed, prepared like the "
                   "images (28x28 padded as observed for the bundled generator); a mask with no white pixel is refused")
    p.add_argument("--mask-id", type=int, default=None, help="one of the seven standard masks, 0..6")
    p.add_argument("--observed", action="store_true", help="IMAGE is already the corrupted observation")
    p.add_argument("--method", default="map,fullrank",
                   help="comma-separated: map (the paper's point estimate); fullrank (the recommended posterior: "
                        "MAP from 8 starts (the best 3 go on after a tenth of the steps), the Laplace approximation at "
                        "the best mode, then a full-rank Gaussian guide (100 steps), "
                        "fitted to the pixel-likelihood model (with its misfit term, if any) with kappa 0 and no "
                        "perceptual term, widened by "
                        "--interval-scale; its calibration is measured in the docs' calibration page); vi (the "
                        "paper's mean-field Gaussian guide, known to be overconfident); mcmc (NUTS) "
                        "(default: %(default)s)")
    _add_draw_options(p)
    _add_interval_scale_option(p, None, "default, at the generator's own pixel noise: 1 where its metadata records "
                               "real-image interval factors for this setting (interval_factors, e.g. in-painting "
                               "with --mask-id 0 or 1 or x4 bicubic-antialias SR on the bundled generator: the "
                               "fullrank intervals are then rescaled (widened or narrowed) per level, fitted on real "
                               "images, and written as fullrank_interval<level>_lower/upper.png and .npy), else the "
                               "scale it records "
                               "(interval_scales), else 1; giving the flag turns the factors off")
    p.add_argument("--save-inference-data", action="store_true", help="also write ArviZ NetCDF files")
    p.add_argument("--learn-noise", action="store_true",
                   help="infer sigma_pixel (prior HalfNormal(0.5)) instead of fixing it")
    p.add_argument("--blind", action="append", choices=BLIND_CHOICES, default=[],
                   help="infer this corruption parameter (repeatable): blur (task blur), kernel (super-resolution "
                        "with --kernel gaussian), shift (sub-pixel translation), gain (gain and offset)")
    _add_kernel_option(p, "bicubic-antialias")
    _add_model_options(p)
    add_dataset_options(p)

    p = sub.add_parser("evaluate", help="BRGM (MAP) against classical baselines on test images (Table 1)")
    p.add_argument("--task", required=True, choices=("super-resolution", "inpainting"))
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--num-images", type=int, default=100)
    p.add_argument("--images", default=None, help="folder or glob of test images (default: the 100 bundled ones)")
    p.add_argument("--batch-size", type=int, default=50, help="images optimised together (default: %(default)s)")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS even if its weights are present")
    p.add_argument("--center-crop", action="store_true", help="crop non-square --images to their central square")
    _add_kernel_option(p, "bicubic-antialias")
    _add_model_options(p)
    add_dataset_options(p, evaluate=True)
    p.set_defaults(out="brgm-evaluation")

    p = sub.add_parser("calibrate", help="coverage of posterior methods on problems drawn from the model",
                       description="Simulation-based calibration: draw w from the model's Gaussian prior, "
                       "x = G(w), y = f(x) + N(0, sigma_pixel^2); run each method; report the coverage of its "
                       "central intervals (latents and unknown-region pixels), posterior std / error, RMSE "
                       "against MAP's, SBC rank statistics and wall time. Writes calibration.json and "
                       "calibration.png.")
    p.add_argument("--task", required=True, choices=("super-resolution", "inpainting"))
    p.add_argument("--factor", type=int, default=4, help="super-resolution factor (default: %(default)s)")
    p.add_argument("--mask-id", type=int, default=0, help="standard in-painting mask 0..6 (default: %(default)s)")
    _add_kernel_option(p, "bicubic-antialias")
    p.add_argument("--methods", default="map,vi-meanfield",
                   help="comma-separated names from brgm_pyro.study.METHODS (default: %(default)s)")
    p.add_argument("--import", dest="imports", action="append", default=[],
                   help="module whose METHODS dict (name -> method) adds methods (repeatable)")
    p.add_argument("--num-problems", type=int, default=20)
    p.add_argument("--num-draws", type=int, default=256, help="posterior draws per problem (default: %(default)s)")
    p.add_argument("--steps", type=int, default=500, help="optimisation steps of the methods (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the methods and their draws (default: %(default)s)")
    p.add_argument("--problem-seed", type=int, default=None, help="seed of the simulated problems (default: --seed)")
    p.add_argument("--sigma-pixel", type=float, default=None,
                   help="the model's pixel noise std, also the noise added to the observations (default: 0.1; with "
                        "--images and --model recommended the generator's recommended sigma_pixel for the setting)")
    p.add_argument("--prior-std", default="per-dimension", choices=("per-dimension", "scalar"))
    p.add_argument("--generator", default="fashion-mnist-32", help="bundled name or checkpoint path")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--out", default="brgm-calibration", help="output folder (default: %(default)s)")
    p.add_argument("--interval-scale", type=positive_float, default=1.0,
                   help="widen every method's posterior by this scale about its centre (default: %(default)s)")
    p.add_argument("--fit-interval-scale", action="store_true",
                   help="instead of the coverage report, fit the interval scale of the one method in --methods "
                        "(the scale whose calibration curve is closest to the diagonal); writes interval_scale.json")
    p.add_argument("--no-progress", action="store_true", help="print no progress bars")
    r = p.add_argument_group("real images (--images: the recommended posterior on real images with ground truth)")
    r.add_argument("--images", default=None,
                   help="folder of real images (PNG / JPEG, or Fashion-MNIST IDX files: its test split without "
                        "the 100 bundled images); split into calibration and evaluation images by a seeded rule")
    r.add_argument("--num-calibration", type=int, default=30, help="calibration images (default: %(default)s)")
    r.add_argument("--num-evaluation", type=int, default=30, help="evaluation images (default: %(default)s)")
    r.add_argument("--split-seed", type=int, default=25, help="seed of the split (default: %(default)s)")
    r.add_argument("--alpha", type=float, default=0.1,
                   help="the conformal scale guarantees coverage >= 1 - alpha (default: %(default)s)")
    r.add_argument("--model", choices=("recommended", "plain"), default="recommended",
                   help="the posterior calibrated: 'recommended' (default: the one `brgm reconstruct` fits for this "
                        "setting -- the generator's recommended sigma_pixel and misfit scale, kappa 0, no perceptual "
                        "term -- so the interval factors written are the ones it applies) or 'plain' (the paper's "
                        "pixel likelihood at --sigma-pixel)")
    r.add_argument("--misfit-scale", default="none",
                   help="also measure the model with the generator's misfit term: 'fit' (tau from calibration "
                        "MAP residuals) or a number; 'none' (default) measures --model only (not with a "
                        "recommended model that has its own misfit scale)")
    r.add_argument("--batch-size", type=int, default=5, help="images fitted together (default: %(default)s)")
    return parser


def add_dataset_options(p: argparse.ArgumentParser, evaluate: bool = False) -> None:
    """--resume and --threads (and for reconstruct: --batch-size, --num-images, --bundled-test-images)."""
    g = p.add_argument_group("data sets (several images, a folder, a glob; also under torchrun)")
    if not evaluate:
        g.add_argument("--bundled-test-images", action="store_true",
                       help="reconstruct the 100 bundled Fashion-MNIST test images (one subfolder each)")
        g.add_argument("--num-images", type=int, default=None, help="only the first N images of the data set")
        g.add_argument("--batch-size", type=int, default=8,
                       help="images with the same corruption optimised together by map, vi and fullrank (one "
                            "batched model; each image's result equals its one-image run up to float rounding, "
                            "see the docs' command-line page); mcmc runs one image at a time (default: %(default)s)")
    g.add_argument("--resume", action="store_true",
                   help="skip images already finished in --out (their done.json exists); says how many it skipped")
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (default: OMP_NUM_THREADS, else one for a small generator "
                        "such as the bundled one, else the process's share of the cores; see the docs' speed page)")
