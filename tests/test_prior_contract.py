"""The ``LatentPrior`` contract: a prior that subclasses nothing works with ``BRGMModel``."""

from __future__ import annotations

from dataclasses import replace

import pyro
import pyro.distributions as dist
import pytest
import torch

from brgm_pyro.inference import map_estimate
from brgm_pyro.models import (
    GaussianLatentPrior, LatentPrior, SharedLatentPrior, StudentTLatentPrior,
)

from .inference_problems import linear_gaussian_problem


class WhitenedPrior:
    """z ~ N(0, I) on a flat site "z" of L*D elements; ws = mean + std * reshape(z, (L, D)).

    The same prior on ws as ``GaussianLatentPrior(mean, std, L)``, parameterised differently:
    written against the protocol only (no base class).
    """

    site = "z"

    def __init__(self, mean: torch.Tensor, std: float, num_ws: int) -> None:
        self.mean, self.std, self.num_ws = mean, std, num_ws
        self.dim = num_ws * mean.shape[-1]

    def __call__(self) -> torch.Tensor:
        z = pyro.sample(self.site, dist.Normal(torch.zeros(self.dim), 1.0).to_event(1))
        return self.ws_from_latent(z)

    def init_loc(self) -> torch.Tensor:
        return torch.zeros(self.dim)

    def init_scale(self) -> torch.Tensor:
        return torch.ones(self.dim)

    def ws_from_latent(self, value: torch.Tensor) -> torch.Tensor:
        return self.mean + self.std * value.reshape(*value.shape[:-1], self.num_ws, -1)


def test_a_prior_that_subclasses_nothing_gives_the_closed_form_map():
    problem = linear_gaussian_problem(diagonal=False)
    gaussian = problem.model.prior
    prior = WhitenedPrior(gaussian.mean[0], float(gaussian.std[0, 0]), gaussian.num_ws)
    assert isinstance(prior, LatentPrior)
    model = replace(problem.model, prior=prior)
    result = map_estimate(model, num_steps=1500, lr=0.02, progress=False)
    assert result.latent.shape == (6,) and result.ws.shape == (2, 3)
    assert set(result.terms) == {"z", "obs_pixel"}
    # Same posterior on ws as the Gaussian prior's closed form, reached through the custom site.
    torch.testing.assert_close(result.ws.flatten().double(), problem.mean, atol=2e-3, rtol=0)
    # Step 0 starts at z = 0: the prior term is -log N(0; 0, I) = (n / 2) log(2 pi).
    assert result.terms["z"][0] == pytest.approx(3 * torch.log(torch.tensor(2 * torch.pi)).item(), rel=1e-5)


def test_an_incomplete_prior_is_refused_naming_what_it_lacks():
    problem = linear_gaussian_problem()

    class NoScale:
        site = "w"

        def __call__(self) -> torch.Tensor:
            return torch.zeros(2, 3)

        def init_loc(self) -> torch.Tensor:
            return torch.zeros(2, 3)

        def ws_from_latent(self, value: torch.Tensor) -> torch.Tensor:
            return value

    with pytest.raises(TypeError, match="LatentPrior.*init_scale"):
        replace(problem.model, prior=NoScale())


def test_the_shipped_priors_meet_the_contract_without_a_gaussian_base():
    mean = torch.randn(3)
    student = StudentTLatentPrior(mean, 0.5, 4, df=3.0)
    assert not isinstance(student, GaussianLatentPrior)
    for prior in (GaussianLatentPrior(mean, 0.5, 4), SharedLatentPrior(mean, 0.5, 4), student):
        assert isinstance(prior, LatentPrior)
    # Student-t keeps its behaviour: element-wise log density of StudentT(3, mean, 0.5) over (4, 3).
    x = torch.randn(4, 3)
    expected = torch.distributions.StudentT(3.0, mean, 0.5).log_prob(x).sum()
    torch.testing.assert_close(student.distribution().log_prob(x), expected)
    torch.testing.assert_close(student.init_scale(), torch.full((4, 3), 0.5))
