"""Unknown noise level and unknown corruption parameters as latent sites (issue 12)."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F

from brgm_pyro.corruptions import (
    Blur, Compose, Corruption, GaussianBlur, Inpainting, Intensity, LatentParameter, Shift, SuperResolution,
    fourier_shift,
)
from brgm_pyro.corruptions.super_resolution import gaussian_kernel_1d
from brgm_pyro.generators import LinearGenerator
from brgm_pyro.inference import (
    AuxiliaryGuide, compare, fit_vi, format_table, make_guide, map_estimate, parameter_draws, parameter_summary,
    run_mcmc, to_inference_data, with_auxiliary,
)
from brgm_pyro.models import (
    BRGMModel, GaussianLatentPrior, PixelLikelihood, inverse_gamma_on_variance, pixel_noise_prior,
)

BLUR_PRIOR = dist.LogNormal(math.log(1.5), 0.4)


def log_joint(model_fn, **conditions) -> torch.Tensor:
    tr = pyro.poutine.trace(pyro.condition(model_fn, data=conditions)).get_trace()
    return tr.log_prob_sum()


# --- operators -------------------------------------------------------------------------------

def test_latent_gaussian_blur_equals_fixed_blur_of_same_size():
    x = torch.rand(2, 3, 20, 20) * 2 - 1
    op = Blur.gaussian(LatentParameter(BLUR_PRIOR), size=13)
    assert isinstance(op, GaussianBlur) and op.latent_parameters().keys() == {"corruption.blur_sigma"}
    with op.bind({"corruption.blur_sigma": torch.tensor(1.7)}):
        y = op(x)
    torch.testing.assert_close(y, Blur.gaussian(1.7, size=13)(x), atol=2e-6, rtol=0)
    # one sigma per image of the batch
    with op.bind({"corruption.blur_sigma": torch.tensor([0.8, 2.2])}):
        y2 = op(x)
    torch.testing.assert_close(y2[1:], Blur.gaussian(2.2, size=13)(x[1:]), atol=2e-6, rtol=0)
    torch.testing.assert_close(y2[:1], Blur.gaussian(0.8, size=13)(x[:1]), atol=2e-6, rtol=0)


def test_latent_blur_is_differentiable_in_sigma():
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    op = Blur.gaussian(LatentParameter(BLUR_PRIOR), size=9)

    def f(sigma):
        with op.bind({"corruption.blur_sigma": sigma}):
            return op(x)

    assert torch.autograd.gradcheck(f, (torch.tensor(1.3, dtype=torch.float64, requires_grad=True),))


def test_latent_sr_kernel_equals_fixed_kernel_of_same_support():
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    op = SuperResolution(4, kernel="gaussian", sigma=LatentParameter(dist.LogNormal(math.log(2.0), 0.3)))
    size = op.weights.shape[-1]
    k1 = gaussian_kernel_1d(1.4, size)
    fixed = SuperResolution(4, kernel=torch.outer(k1, k1))
    with op.bind({"corruption.sr_kernel_sigma": torch.tensor(1.4)}):
        torch.testing.assert_close(op(x), fixed(x), atol=2e-6, rtol=0)
    assert "latent" in op.describe()
    with pytest.raises(ValueError, match="kernel='gaussian'"):
        SuperResolution(4, kernel="box", sigma=LatentParameter(BLUR_PRIOR))


def test_shift_by_whole_pixels_is_a_roll_and_sub_pixel_shift_is_smooth():
    x = torch.rand(2, 1, 8, 10)
    torch.testing.assert_close(Shift(2.0, -1.0)(x), torch.roll(x, (-1, 2), (2, 3)), atol=1e-5, rtol=0)
    op = Shift(LatentParameter(dist.Normal(0.0, 1.0)), 0.0)
    dx = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    x64 = x.double()

    def f(v):
        with op.bind({"corruption.shift_x": v}):
            return op(x64)

    assert torch.autograd.gradcheck(f, (dx,))
    # shifting a constant image changes nothing; the mean is preserved for any shift
    torch.testing.assert_close(fourier_shift(torch.ones(1, 1, 6, 6), torch.tensor([0.4]), torch.tensor([0.7])),
                               torch.ones(1, 1, 6, 6))
    torch.testing.assert_close(f(torch.tensor(0.4, dtype=torch.float64)).mean(), x64.mean())


def test_intensity_and_compose_bind_every_site():
    x = torch.rand(1, 1, 8, 8)
    op = Compose(Intensity(LatentParameter(dist.LogNormal(0.0, 0.2)), LatentParameter(dist.Normal(0.0, 0.2))),
                 Inpainting(torch.ones(1, 8, 8)))
    assert set(op.latent_parameters()) == {"corruption.gain", "corruption.offset"}
    with op.bind({"corruption.gain": torch.tensor(1.5), "corruption.offset": torch.tensor(-0.2)}):
        torch.testing.assert_close(op(x), 1.5 * x - 0.2)
    assert torch.equal(Intensity(2.0, 0.5)(x), x * 2.0 + 0.5)


def test_unbound_or_misbound_latent_parameters_are_clear_errors():
    op = Blur.gaussian(LatentParameter(BLUR_PRIOR), size=9)
    with pytest.raises(ValueError, match="corruption.blur_sigma.*no value bound"):
        op(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="missing"):
        with op.bind({}):
            pass
    with pytest.raises(ValueError, match="unknown"):
        with op.bind({"corruption.blur_sigma": torch.tensor(1.0), "typo": torch.tensor(1.0)}):
            pass
    with pytest.raises(ValueError, match="pyro.distributions"):
        LatentParameter(torch.distributions.LogNormal(0.0, 1.0))
    with pytest.raises(ValueError, match="scalar"):
        LatentParameter(dist.LogNormal(torch.zeros(2), 1.0))
    with pytest.raises(ValueError, match="outside the support"):
        LatentParameter(BLUR_PRIOR, init=-1.0)
    with pytest.raises(ValueError, match="'learn'"):
        PixelLikelihood("learned")
    with pytest.raises(ValueError, match="share the site name"):
        Compose(Shift(LatentParameter(dist.Normal(0.0, 1.0), name="s")),
                Shift(LatentParameter(dist.Normal(0.0, 1.0), name="s"))).latent_parameters()


def test_a_users_own_corruption_gets_a_latent_parameter_in_a_few_lines():
    class Darken(Corruption):
        pointwise = True

        def __init__(self, factor):
            super().__init__()
            self.declare_parameter("factor", factor, site="darken_factor")

        def output_shape(self, input_shape):
            return tuple(input_shape)

        def forward(self, x):
            return x * self.parameter_batch("factor", x)[:, None, None, None]

    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(Darken(0.5)(x), x * 0.5)
    op = Darken(LatentParameter(dist.Beta(2.0, 2.0)))
    assert list(op.latent_parameters()) == ["corruption.darken_factor"]
    with op.bind({"corruption.darken_factor": torch.tensor([0.1, 0.2, 0.3])}):
        torch.testing.assert_close(op(x), x * torch.tensor([0.1, 0.2, 0.3])[:, None, None, None])


# --- the model -------------------------------------------------------------------------------

def linear_blur_model(sigma_pixel, blur, seed: int = 0, noise: float = 0.1,
                      res: int = 8) -> tuple[BRGMModel, torch.Tensor]:
    """A linear generator (L=2, D=3) on res x res images, Gaussian blur, a noisy observation."""
    G = LinearGenerator.random(2, 3, res, scale=0.5, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    w_true = torch.randn(1, 2, 3, generator=g)
    x = G.synthesis(w_true)
    y = Blur.gaussian(1.5, size=7)(x) + noise * torch.randn(x.shape, generator=g)
    prior = GaussianLatentPrior(torch.zeros(3), 1.0, 2)
    return BRGMModel(G, blur, y[0], prior, None, (PixelLikelihood(sigma_pixel),)), w_true


def test_fixed_parameters_give_the_papers_model_exactly():
    model, w = linear_blur_model(0.1, Blur.gaussian(1.5, size=7))
    assert model.latent_parameters() == {} and model.initial_values() == {}
    tr = pyro.poutine.trace(pyro.condition(model.model, data={"w": w[0]})).get_trace()
    assert [n for n, s in tr.nodes.items() if s["type"] == "sample"] == ["w", "obs_pixel"]
    # independent computation of the log joint: Gaussian prior + Gaussian likelihood of the blurred G(w)
    k = Blur.gaussian(1.5, size=7).kernel
    blurred = F.conv2d(F.pad(model.generator.synthesis(w), [3] * 4, mode="reflect"), k[None, None])
    expected = (dist.Normal(0.0, 1.0).log_prob(w).sum()
                + dist.Normal(blurred[0], 0.1).log_prob(model.observation).sum())
    torch.testing.assert_close(tr.log_prob_sum(), expected)
    assert map_estimate(model, num_steps=3, progress=False).parameters == {}


def test_latent_parameters_at_their_true_values_reproduce_the_fixed_model():
    fixed, w = linear_blur_model(0.1, Blur.gaussian(1.5, size=7))
    latent, _ = linear_blur_model(LatentParameter(pixel_noise_prior()),
                                  Blur.gaussian(LatentParameter(BLUR_PRIOR), size=7))
    assert set(latent.latent_parameters()) == {"corruption.blur_sigma", "sigma_pixel"}
    values = {"corruption.blur_sigma": torch.tensor(1.5), "sigma_pixel": torch.tensor(0.1)}
    w0 = w[0].clone().requires_grad_(True)
    lp_latent = log_joint(latent.model, w=w0, **values)
    g_latent, = torch.autograd.grad(lp_latent, w0)
    w1 = w[0].clone().requires_grad_(True)
    lp_fixed = log_joint(fixed.model, w=w1)
    g_fixed, = torch.autograd.grad(lp_fixed, w1)
    extra = BLUR_PRIOR.log_prob(torch.tensor(1.5)) + pixel_noise_prior().log_prob(torch.tensor(0.1))
    torch.testing.assert_close(lp_latent, lp_fixed + extra, atol=1e-4, rtol=0)
    torch.testing.assert_close(g_latent, g_fixed, atol=1e-4, rtol=1e-4)


def test_model_sites_are_one_value_per_particle_and_per_image():
    model, _ = linear_blur_model("learn", Blur.gaussian(LatentParameter(BLUR_PRIOR), size=7))
    with pyro.plate("particles", 5, dim=-1):
        tr = pyro.poutine.trace(model.model).get_trace()
    assert tr.nodes["corruption.blur_sigma"]["value"].shape == (5,)
    assert tr.nodes["sigma_pixel"]["value"].shape == (5,)
    tr.compute_log_prob()
    assert tr.nodes["obs_pixel"]["log_prob"].shape == (5,)
    # a batch of 3 observations: one blur and one noise level per image under the "images" plate
    single, _ = linear_blur_model("learn", Blur.gaussian(LatentParameter(BLUR_PRIOR), size=7))
    batched = BRGMModel(single.generator, single.corruption, single.observation.expand(3, -1, -1, -1).clone(),
                        single.prior, None, single.likelihoods)
    tr = pyro.poutine.trace(batched.model).get_trace()
    assert tr.nodes["corruption.blur_sigma"]["value"].shape == (3,)
    result = map_estimate(batched, num_steps=5, progress=False)
    assert result.parameters["sigma_pixel"].shape == (3,)


def test_inverse_gamma_on_the_variance_is_the_distribution_of_sigma():
    d = inverse_gamma_on_variance(3.0, 0.5)
    s = torch.tensor([0.2, 0.4, 0.9])
    # change of variables: p(sigma) = InvGamma(sigma^2) * 2 sigma
    expected = dist.InverseGamma(3.0, 0.5).log_prob(s**2) + torch.log(2 * s)
    torch.testing.assert_close(d.log_prob(s), expected)
    assert LatentParameter(d).initial_value() > 0


# --- inference on a problem with a closed-form noise posterior -------------------------------

def noise_posterior_on_grid(model: BRGMModel, prior: dist.Distribution):
    """p(sigma | I) on a grid: the linear-Gaussian marginal likelihood N(I; A mu + b, sigma^2 I + s^2 A A^T)
    (the blur is fixed and known, so it is folded into A) times the prior; returns grid and weights."""
    G = model.generator
    basis = torch.eye(6).reshape(6, 2, 3)
    blurred = model.corruption(G.synthesis(basis)).reshape(6, -1).double()
    offset = model.corruption(G.synthesis(torch.zeros(1, 2, 3))).reshape(-1).double()
    A = (blurred - offset).T  # (n, 6)
    y = model.observation.reshape(-1).double() - offset
    grid = torch.linspace(0.03, 0.4, 3000, dtype=torch.float64)[:, None]
    # eigen-decomposition of A A^T + sigma^2 I: eigenvalues s_i^2 + sigma^2 on range(A), sigma^2 elsewhere
    u, sv, _ = torch.linalg.svd(A, full_matrices=False)
    proj = u.T @ y
    rest = y.square().sum() - proj.square().sum()
    var = sv.square() + grid**2  # (grid, 6)
    n = len(y)
    loglik = -0.5 * ((proj.square() / var).sum(-1) + rest / grid[:, 0] ** 2
                     + torch.log(var).sum(-1) + (n - 6) * torch.log(grid[:, 0] ** 2) + n * math.log(2 * math.pi))
    grid = grid[:, 0]
    logp = loglik + prior.log_prob(grid.float()).double()
    w = torch.softmax(logp, 0)
    return grid, w


def quantile(grid, w, q):
    return float(grid[torch.searchsorted(torch.cumsum(w, 0), torch.tensor(q, dtype=torch.float64))])


@pytest.mark.slow
def test_learned_noise_matches_the_closed_form_posterior_under_map_vi_and_nuts():
    model, _ = linear_blur_model("learn", Blur.gaussian(1.5, size=7), noise=0.1, res=12)
    grid, w = noise_posterior_on_grid(model, pixel_noise_prior())
    mean, lo, hi = float((grid * w).sum()), quantile(grid, w, 0.05), quantile(grid, w, 0.95)
    assert lo < 0.1 < hi  # the data set is an honest draw

    r = map_estimate(model, num_steps=150, lr=0.05, progress=False)
    assert abs(float(r.parameters["sigma_pixel"]) / mean - 1) < 0.1  # joint mode: near the marginal mean

    v = fit_vi(model, guide="gaussian", num_steps=200, lr=0.05, num_particles=4, sigma_prior=None, progress=False)
    s = parameter_summary(v, num_draws=2000)["sigma_pixel"]
    assert abs(s["mean"] / mean - 1) < 0.1
    assert s["lower"] < 0.1 < s["upper"]

    m = run_mcmc(model, num_samples=120, warmup_steps=60, max_tree_depth=4, progress=False)
    draws = m.parameters["sigma_pixel"].reshape(-1)
    assert draws.shape == (120,)
    # MC error of the mean: posterior sd / sqrt(ESS); ESS >= 40 here, so allow 0.6 sd (3.8 MC errors).
    sd = float(((grid - mean) ** 2 * w).sum().sqrt())
    assert abs(float(draws.mean()) - mean) < 0.6 * sd
    assert abs(float(torch.quantile(draws.double(), 0.95)) - hi) < sd

    idata = to_inference_data(m)
    assert idata.posterior["sigma_pixel"].shape == (1, 120)
    rows = compare({"MAP": r, "VI": v, "NUTS": m}, model, num_samples=50, khat_particles=50)
    assert [row["method"] for row in rows] == ["MAP", "VI", "NUTS"]
    assert rows[0]["sigma_pixel 90%"] is None and rows[2]["sigma_pixel 90%"][0] < rows[2]["sigma_pixel"]
    assert "sigma_pixel" in format_table(rows)


def test_guides_cover_the_extra_sites():
    model, _ = linear_blur_model("learn", Blur.gaussian(LatentParameter(BLUR_PRIOR), size=7))
    aux = AuxiliaryGuide(model)
    with pyro.get_param_store().scope():
        tr = pyro.poutine.trace(aux).get_trace()
        assert isinstance(tr.nodes["sigma_pixel"]["fn"], dist.LogNormal)  # positive support
        initial_sigma = float(model.initial_values()["sigma_pixel"])
        assert float(pyro.param("aux.sigma_pixel.loc").detach()) == pytest.approx(math.log(initial_sigma))
    shifted = BRGMModel(model.generator, Shift(LatentParameter(dist.Normal(0.0, 1.0)), 0.0), model.observation,
                        model.prior, None, (PixelLikelihood(0.1),))
    with pyro.get_param_store().scope():
        assert isinstance(pyro.poutine.trace(AuxiliaryGuide(shifted)).get_trace().nodes["corruption.shift_x"]["fn"],
                          dist.Normal)
    for name in ("gaussian", "normal", "delta"):
        with pyro.get_param_store().scope():
            tr = pyro.poutine.trace(make_guide(name, model)).get_trace()
            assert {"w", "sigma_pixel", "corruption.blur_sigma"} <= set(tr.nodes), name
    def w_only():
        return pyro.sample("w", dist.Normal(pyro.param("m", torch.zeros(2, 3)), 0.1).to_event(2))

    with pyro.get_param_store().scope():
        tr = pyro.poutine.trace(with_auxiliary(w_only, model)).get_trace()
        assert {"w", "sigma_pixel", "corruption.blur_sigma"} <= set(tr.nodes)
    v = fit_vi(model, num_steps=5, num_particles=2, progress=False)
    draws = parameter_draws(v, num_draws=30)
    assert draws["corruption.blur_sigma"].shape == (30,) and (draws["sigma_pixel"] > 0).all()
    idata = to_inference_data(v, num_draws=30)
    assert idata.posterior["corruption.blur_sigma"].shape == (1, 30)
    r = map_estimate(model, num_steps=5, progress=False)
    assert to_inference_data(r, model).posterior["sigma_pixel"].shape == (1, 1)


# --- recovery on the bundled generator --------------------------------------------------------

@pytest.mark.slow
def test_unknown_blur_and_noise_are_recovered_on_the_bundled_generator():
    """Synthetic truth x = G(mapping(z)) (seed 104, as in benchmarks/blind_recovery.py), blur 1.75 px,
    noise 0.1: MAP within 20% (noise) and 15% (blur); VI warm-started at the MAP covers both."""
    from brgm_pyro.generators import load_generator
    from brgm_pyro.inference import gaussian_guide_at
    from brgm_pyro.models import BRGMConfig, brgm_model

    G = load_generator("fashion-mnist-32", device="cpu")
    g = torch.Generator().manual_seed(104)
    with torch.no_grad():
        x = G.synthesis(G.mapping(torch.randn(1, G.z_dim, generator=g)))
        y = Blur.gaussian(1.75, size=25)(x) + 0.1 * torch.randn(x.shape, generator=g)
    config = BRGMConfig(sigma_pixel=0.1, kappa=0.25, prior_std="per-dimension")
    model = brgm_model(G, Blur.gaussian(LatentParameter(BLUR_PRIOR), size=25), y[0], config=config,
                       likelihoods=[PixelLikelihood("learn")])
    r = map_estimate(model, num_steps=400, progress=False)
    assert abs(float(r.parameters["sigma_pixel"]) / 0.1 - 1) < 0.2
    assert abs(float(r.parameters["corruption.blur_sigma"]) / 1.75 - 1) < 0.15
    v = fit_vi(model, guide=gaussian_guide_at(model, r, init_scale=0.005), num_steps=150, lr=0.02, num_particles=2,
               sigma_prior=None, progress=False)
    s = parameter_summary(v)
    assert s["sigma_pixel"]["lower"] < 0.1 < s["sigma_pixel"]["upper"]
    assert s["corruption.blur_sigma"]["lower"] < 1.75 < s["corruption.blur_sigma"]["upper"]


# --- command line ------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_learn_noise_and_blind_report_the_parameters(tmp_path, capsys):
    import json

    from brgm_pyro.bundled import load_test_images
    from brgm_pyro.app.cli import main
    from brgm_pyro.io import save_image

    save_image(load_test_images()[0][:1], tmp_path / "shirt.png")
    out = tmp_path / "blind"
    assert main(["reconstruct", str(tmp_path / "shirt.png"), "--task", "super-resolution", "--kernel", "gaussian",
                 "--blind", "kernel", "--blind", "shift", "--learn-noise", "--method", "map,vi", "--steps", "2",
                 "--samples", "4", "--features", "none", "--out", str(out), "--no-progress",
                 "--save-inference-data"]) == 0
    assert "VI: corruption.shift_x" in capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    sites = {"corruption.sr_kernel_sigma", "corruption.shift_x", "corruption.shift_y", "sigma_pixel"}
    assert set(report["parameters"]["map"]) == sites == set(report["parameters"]["vi"])
    vi = report["parameters"]["vi"]["sigma_pixel"]
    assert 0 < vi["lower"] <= vi["mean"] <= vi["upper"] and vi["level"] == 0.9
    assert report["parameters"]["map"]["sigma_pixel"]["lower"] is None
    assert report["config"]["sigma_pixel"].startswith("learned")
    assert (out / "summary.png").is_file() and (out / "vi_inference_data.nc").is_file()

    img = str(tmp_path / "shirt.png")
    for argv, match in ((["--task", "super-resolution", "--blind", "blur"], "needs the Gaussian blur task"),
                        (["--task", "super-resolution", "--blind", "kernel"], "--kernel gaussian")):
        assert main(["reconstruct", img, *argv, "--steps", "1", "--method", "map", "--out", str(tmp_path / "x"),
                     "--no-progress"]) == 2
        assert match in capsys.readouterr().err


def test_learned_perceptual_sigma_is_a_site_with_one_value_per_particle():
    from brgm_pyro.models import PerceptualLikelihood

    model, _ = linear_blur_model(0.1, Blur.gaussian(1.5, size=7))
    features = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))
    lik = PerceptualLikelihood(features, "learn")
    model = BRGMModel(model.generator, model.corruption, model.observation, model.prior, None,
                      (*model.likelihoods, lik))
    assert set(model.latent_parameters()) == {"sigma_perceptual"}
    with pyro.plate("particles", 4, dim=-1):
        tr = pyro.poutine.trace(model.model).get_trace()
    tr.compute_log_prob()
    assert tr.nodes["sigma_perceptual"]["value"].shape == (4,)
    s = tr.nodes["sigma_perceptual"]["value"]
    feats = features(model.corruption(model.generator.synthesis(tr.nodes["w"]["value"])))
    expected = dist.Normal(feats, s[:, None]).log_prob(lik.target(model.observation)).sum(-1)
    torch.testing.assert_close(tr.nodes["obs_perceptual"]["log_prob"], expected)
