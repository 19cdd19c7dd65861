"""Contracts as capabilities: a prior and a likelihood that subclass nothing run through MAP, VI, the
Laplace approximation and NUTS, or fail with an error naming the capability they lack; and no
module above the contracts asks a prior, likelihood or result for its class."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

from brgm_pyro.inference import fit_laplace, fit_vi, map_estimate, run_mcmc, to_inference_data
from brgm_pyro.inference.posterior import InferenceResult

from .inference_problems import linear_gaussian_problem

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py

ROOT = Path(__file__).resolve().parents[1]


class WhitenedGaussianPrior:
    """z ~ N(0, I) on a flat site "z"; ws = mean + std * reshape(z, (L, D)): the linear problem's
    Gaussian prior, parameterised differently, written against the protocol only."""

    site = "z"

    def __init__(self, mean: torch.Tensor, std: float, num_ws: int, gaussian: bool = True) -> None:
        self.mean, self.std, self.num_ws = mean, std, num_ws
        self.dim = num_ws * mean.shape[-1]
        if not gaussian:  # the same prior, without saying that it is Gaussian
            self.gaussian_loc_scale = None

    def __call__(self) -> torch.Tensor:
        return self.ws_from_latent(pyro.sample(self.site, dist.Normal(torch.zeros(self.dim), 1.0).to_event(1)))

    def init_loc(self) -> torch.Tensor:
        return torch.zeros(self.dim)

    def init_scale(self) -> torch.Tensor:
        return torch.ones(self.dim)

    def ws_from_latent(self, value: torch.Tensor) -> torch.Tensor:
        return self.mean + self.std * value.reshape(*value.shape[:-1], self.num_ws, -1)

    def gaussian_loc_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(self.dim), torch.ones(self.dim)


class NormalNoise:
    """y ~ N(f(G(w)), sigma^2) on the observed pixels, written against the protocol only."""

    site = "y"

    def __init__(self, sigma: float, say_gaussian: bool = True) -> None:
        self.sigma = sigma
        if say_gaussian:
            self.gaussian_pixel_noise = lambda: self.sigma

    def __call__(self, corrupted: torch.Tensor, observation: torch.Tensor, mask: torch.Tensor | None) -> None:
        d = dist.Normal(corrupted, self.sigma)
        if mask is not None:
            d = d.mask(mask.bool())
        pyro.sample(self.site, d.to_event(3), obs=observation)


def custom_problem(gaussian_prior: bool = True, gaussian_noise: bool = True):
    """The linear-Gaussian problem (closed-form posterior on ws) with the custom prior and likelihood."""
    problem = linear_gaussian_problem(diagonal=False)
    prior = problem.model.prior
    std = float(prior.std[0, 0])
    custom = WhitenedGaussianPrior(prior.mean[0], std, prior.num_ws, gaussian_prior)
    sigma = problem.model.likelihoods[0].sigma
    model = replace(problem.model, prior=custom, likelihoods=(NormalNoise(sigma, gaussian_noise),))
    mu_ws = prior.mean.reshape(-1).double()
    # the exact posterior of z = (ws - mu) / std
    return model, (problem.mean - mu_ws) / std, problem.cov / std**2


def test_custom_prior_and_likelihood_run_through_map_vi_laplace_and_nuts():
    model, z_mean, z_cov = custom_problem()
    fit = map_estimate(model, num_steps=1500, lr=0.02, progress=False)
    assert set(fit.terms) == {"z", "y"}
    torch.testing.assert_close(fit.latent.double(), z_mean, atol=3e-3, rtol=0)  # MAP = mean (Gaussian)
    # Laplace: exact for a linear model -- the posterior covariance in closed form
    laplace = fit_laplace(model, num_steps=1500, lr=0.02)
    torch.testing.assert_close(laplace.q.distribution.covariance_matrix.double(), z_cov, atol=1e-4, rtol=1e-3)
    # full-rank VI from the Laplace approximation stays at the exact posterior
    vi = fit_vi(model, guide="fullrank", init_loc=laplace.q.mean, num_steps=300, lr=0.01, num_particles=16,
                init_scale_tril=laplace.q.distribution.scale_tril, progress=False, seed=0)
    draws = vi.sample(4000, images=False, seed=1).latents.double()
    torch.testing.assert_close(draws.mean(0), z_mean, atol=0.05, rtol=0)
    torch.testing.assert_close(draws.std(0), z_cov.diagonal().sqrt(), atol=0.05, rtol=0.1)
    # NUTS on the custom site
    mcmc = run_mcmc(model, num_samples=300, warmup_steps=200, num_chains=1, seed=0, progress=False)
    assert mcmc.latents.shape == (1, 300, 6)
    sd = z_cov.diagonal().sqrt()
    assert ((mcmc.latents[0].double().mean(0) - z_mean).abs() < 0.5 * sd).all()  # 300 draws: se ~ sd / 10
    # the results share one interface: what every diagnostic reads
    for result, draws_shape in ((fit, (1, 1, 6)), (vi, (1, 7, 6)), (laplace, (1, 7, 6)), (mcmc, (1, 300, 6))):
        assert isinstance(result, InferenceResult)
        assert result.latent_draws(7, seed=0).shape == draws_shape
        assert result.parameter_draws(7, seed=0) == {}
    idata = to_inference_data(laplace, num_draws=5)
    assert idata.posterior["w"].shape == (1, 5, 6)


def test_missing_capabilities_are_named():
    model, _, _ = custom_problem(gaussian_prior=False)
    map_estimate(model, num_steps=2, progress=False)  # what needs no capability still runs
    with pytest.raises(ValueError, match="Gaussian prior.*gaussian_loc_scale"):
        fit_laplace(model, num_steps=2)
    model, _, _ = custom_problem(gaussian_noise=False)
    fit_vi(model, num_steps=2, progress=False)
    with pytest.raises(ValueError, match="Gaussian pixel noise.*gaussian_pixel_noise"):
        fit_laplace(model, num_steps=2)


def test_simulated_problems_need_the_same_capabilities():
    from brgm_pyro.study import simulate_problem

    model, _, _ = custom_problem()
    problem = simulate_problem(model, 3, seed=1)
    assert problem.latent.shape == (6,) and problem.observation.shape == (1, 4, 4)
    with pytest.raises(ValueError, match="gaussian_loc_scale"):
        simulate_problem(custom_problem(gaussian_prior=False)[0], 0)
    with pytest.raises(ValueError, match="gaussian_pixel_noise"):
        simulate_problem(custom_problem(gaussian_noise=False)[0], 0)


# --------------------------------------------------------------------------- no type tests above the contracts

CONCRETE = {
    # priors and likelihoods (brgm_pyro.models)
    "GaussianLatentPrior", "SharedLatentPrior", "StudentTLatentPrior", "LocationScaleLatentPrior",
    "PixelLikelihood", "PerceptualLikelihood",
    # results (brgm_pyro.inference)
    "MAPResult", "MCMCResult", "Posterior", "VIPosterior", "LaplacePosterior", "ImportancePosterior",
    "MixturePosterior",
}
# A class may be tested for in the module that defines it (e.g. learn_noise swaps the pixel likelihood).
DEFINED_IN = {"models/priors.py", "models/likelihoods.py", "inference/map.py", "inference/mcmc.py",
              "inference/posterior.py", "inference/vi.py", "inference/laplace.py", "inference/importance.py",
              "inference/ensemble.py"}


def type_tests(source: str, name: str) -> list[str]:
    """isinstance / issubclass against a concrete prior, likelihood or result class, and type(x) compared."""
    found = []
    tree = ast.parse(source, filename=name)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        if node.func.id in ("isinstance", "issubclass") and len(node.args) == 2:
            names = {n.id if isinstance(n, ast.Name) else getattr(n, "attr", None) for n in ast.walk(node.args[1])}
            if names & CONCRETE:
                found.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Call) and isinstance(s.func, ast.Name) and s.func.id == "type" for s in sides):
                found.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    return found


def above_the_contracts() -> list[Path]:
    folders = [ROOT / "inference", ROOT / "brgm_pyro" / "study", ROOT / "brgm_pyro" / "app", ROOT / "models"]
    return [f for folder in folders for f in sorted(folder.rglob("*.py"))
            if str(f.relative_to(ROOT)) not in DEFINED_IN]


def test_no_type_tests_on_priors_likelihoods_or_results_above_their_contracts():
    files = above_the_contracts()
    assert len(files) > 30  # the scan sees the code
    assert [hit for f in files for hit in type_tests(f.read_text(), str(f.relative_to(ROOT)))] == []


def test_the_type_test_scan_can_fail():
    source = "def f(r, m):\n    return isinstance(r, (int, MAPResult)) or type(m.prior) in (A, B)\n"
    assert len(type_tests(source, "probe.py")) == 2
    assert type_tests("isinstance(x, torch.Tensor)\n", "fine.py") == []
