"""Why the Gaussian fits under-cover in-painting: the posterior between the fit and the truth.

For each calibration problem (issue 10's: bundled generator, sigma_pixel 0.1, per-dimension prior
std, kappa 0) this fits the recommended posterior's Laplace step (``fit_multistart_laplace``,
8 starts, the calibration benchmark's method seed) and prints

* the log joint log p(w, y) along the straight line from the fit's mode w* to the true latent,
  relative to log p(w*, y) (21 points), and the mean +- std of the same for 64 draws of the
  Laplace approximation: a barrier on the line means the truth sits in another mode; a smooth,
  slow fall means one basin that is wider towards the truth than the Gaussian;
* with ``--hessian``: the exact Hessian of log p at w* (d double-backward passes) against the
  Gauss-Newton precision the Laplace approximation uses, the curvature of both along the
  direction to the truth, the gradient norm at w* (how far Adam's last iterate is from a
  stationary point), and the coverage of the unknown pixels' 50% / 90% intervals under the
  Gauss-Newton and the exact-Hessian Laplace approximations (eigenvalues floored at the
  smallest prior precision).

    OMP_NUM_THREADS=1 python benchmarks/posterior_geometry.py --task inpainting --problem-seed 1 \
        --problems 0,3,5,9 [--hessian]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibration_variational import corruption, parse_range  # noqa: E402

from brgm_pyro.generators import load_generator  # noqa: E402
from brgm_pyro.study import derive_seed, interval_coverage, problem_model, simulate_problem  # noqa: E402
from brgm_pyro.inference.importance import differentiable_log_joint  # noqa: E402
from brgm_pyro.inference.multistart import fit_multistart_laplace  # noqa: E402
from brgm_pyro.models.brgm import generate  # noqa: E402


def log_joint_on_line(model, start: torch.Tensor, end: torch.Tensor, points: int = 21) -> torch.Tensor:
    """log p(w, y) at ``points`` evenly spaced w on the segment start -> end, minus its value at start."""
    ts = torch.linspace(0, 1, points).to(start)
    path = start + ts.reshape(-1, *[1] * start.ndim) * (end - start)
    with torch.no_grad():
        values = differentiable_log_joint(model, path, 8).double()
    return values - values[0]


def exact_precision(model, mode: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(-Hessian of log p(w, y) at ``mode`` over the flattened latent (d, d), gradient norm there)."""
    x = mode.flatten().clone().requires_grad_(True)
    value = differentiable_log_joint(model, x.reshape(1, *mode.shape), 1)[0]
    grad, = torch.autograd.grad(value, x, create_graph=True)
    rows = [torch.autograd.grad(grad[k], x, retain_graph=True)[0].double() for k in range(x.numel())]
    hessian = torch.stack(rows)
    return -0.5 * (hessian + hessian.T), float(grad.detach().norm())


def pixel_coverage(problem, mode: torch.Tensor, scale_tril: torch.Tensor, n: int = 256) -> list[float]:
    """Coverage of the unknown pixels' central 50% / 90% intervals under N(mode, L L^T)."""
    m = problem.model
    z = torch.randn(n, mode.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    draws = (mode.flatten().double() + z @ scale_tril.T).float().reshape(n, *mode.shape)
    with torch.no_grad():
        images = torch.cat([generate(m.generator, m.prior.ws_from_latent(c)) for c in draws.split(64)])
    return interval_coverage(images[:, problem.unknown], problem.image[0][problem.unknown], [0.5, 0.9])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="inpainting", choices=("inpainting", "super-resolution"))
    p.add_argument("--problems", default="0,3,5,9")
    p.add_argument("--problem-seed", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="the calibration benchmark's method seed")
    p.add_argument("--hessian", action="store_true", help="also the exact Hessian (about 1 minute per problem)")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    generator = load_generator("fashion-mnist-32", device="cpu")
    base = problem_model(generator, corruption(args.task), sigma_pixel=0.1, prior_std="per-dimension")
    print(f"# {args.task}, problem seed {args.problem_seed}, method seed {args.seed}, threads=1")
    for index in parse_range(args.problems):
        t0 = time.perf_counter()
        problem = simulate_problem(base, index, args.problem_seed)
        laplace, _ = fit_multistart_laplace(problem.model, seed=derive_seed(args.seed, index, 0))
        q = laplace.q.distribution
        mode = laplace.q.mean.detach().clone()
        truth = problem.latent.to(mode)
        line = log_joint_on_line(problem.model, mode, truth)
        torch.manual_seed(index)  # the Laplace draws, reproducible
        draws = laplace.q.sample(64)
        with torch.no_grad():
            at_draws = differentiable_log_joint(problem.model, draws, 8).double()
            at_mode = differentiable_log_joint(problem.model, mode.unsqueeze(0), 1).double()[0]
        print(f"problem {index}: log p along mode -> truth: " + " ".join(f"{float(v):.0f}" for v in line)
              + f" | Laplace draws: {float((at_draws - at_mode).mean()):.0f} +- {float((at_draws - at_mode).std()):.0f}"
              + f" | |truth - mode| {float((truth - mode).norm()):.1f}", flush=True)
        if args.hessian:
            precision, grad_norm = exact_precision(problem.model, mode)
            gauss_newton = torch.cholesky_inverse(q.scale_tril.double())
            u = (truth - mode).flatten().double()
            u = u / u.norm()
            floor = float(problem.model.prior.init_scale().double().pow(-2).min())
            evals, evecs = torch.linalg.eigh(precision)
            cov = evecs @ torch.diag(1 / evals.clamp(min=floor)) @ evecs.T
            exact_tril = torch.linalg.cholesky(0.5 * (cov + cov.T))
            gn_cov = pixel_coverage(problem, mode, q.scale_tril.double())
            ex_cov = pixel_coverage(problem, mode, exact_tril)
            print(f"   gradient norm at the mode {grad_norm:.0f}; -Hessian: {int((evals < 0).sum())} negative "
                  f"eigenvalues (min {float(evals.min()):.3g}); curvature towards the truth: exact "
                  f"{float(u @ precision @ u):.2f}, Gauss-Newton {float(u @ gauss_newton @ u):.2f}; "
                  f"50% / 90% coverage: Gauss-Newton Laplace {gn_cov[0]:.2f} / {gn_cov[1]:.2f}, "
                  f"exact-Hessian Laplace {ex_cov[0]:.2f} / {ex_cov[1]:.2f}", flush=True)
        print(f"   {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
