"""The StyleGAN2 generator against independent NumPy/SciPy computations, plus its interface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

from brgm_pyro.generators import LatentStats, LinearGenerator, PriorGenerator, StyleGAN2Generator
from brgm_pyro.generators.stylegan2 import (
    FullyConnectedLayer, channel_schedule, modulated_conv2d, normalize_2nd_moment, setup_filter,
    upfirdn2d, upsample2d,
)

from .conftest import tiny_config


def np_fir_up2(x: np.ndarray, taps=(1, 3, 3, 1)) -> np.ndarray:
    """Reference 2x FIR upsampling of one (H, W) channel: zero insertion, pad (2, 1), 'valid' convolution."""
    f = np.outer(taps, taps).astype(np.float64)
    f = f / f.sum() * 4
    h, w = x.shape
    up = np.zeros((2 * h, 2 * w))
    up[::2, ::2] = x
    up = np.pad(up, ((2, 1), (2, 1)))
    return signal.convolve2d(up, f, mode="valid")


def test_setup_filter_is_normalised_outer_product():
    f = setup_filter([1, 3, 3, 1]).numpy()
    expected = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
    np.testing.assert_allclose(f, expected, rtol=0, atol=1e-7)


def test_upsample2d_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 7))
    y = upsample2d(torch.tensor(x, dtype=torch.float64), setup_filter().double()).numpy()
    assert y.shape == (2, 3, 10, 14)
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[b, c], np_fir_up2(x[b, c]), atol=1e-12)


def test_upfirdn2d_down_and_negative_padding_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 1, 9, 9))
    f = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    # Padding (2, 1, 2, 1) then 'valid' filtering and keeping every 2nd sample.
    y = upfirdn2d(torch.tensor(x), torch.tensor(f), down=2, padding=(2, 1, 2, 1)).numpy()
    ref = signal.convolve2d(np.pad(x[0, 0], ((2, 1), (2, 1))), f, mode="valid")[::2, ::2]
    np.testing.assert_allclose(y[0, 0], ref, atol=1e-12)
    # Negative padding crops.
    y = upfirdn2d(torch.tensor(x), torch.tensor(f), padding=(-1, -1, -2, 0)).numpy()
    ref = signal.convolve2d(x[0, 0, 2:, 1:-1], f, mode="valid")
    np.testing.assert_allclose(y[0, 0], ref, atol=1e-12)


def np_modulated_conv(x, weight, styles, demodulate=True, up=1):
    """Per-sample modulated convolution written directly from StyleGAN2's Eqs. 1-3."""
    batch, cin, h, w = x.shape
    cout, _, k, _ = weight.shape
    out = []
    for b in range(batch):
        wb = weight * styles[b][None, :, None, None]
        if demodulate:
            wb = wb / np.sqrt((wb**2).sum(axis=(1, 2, 3), keepdims=True) + 1e-8)
        chans = []
        for o in range(cout):
            acc = 0
            for i in range(cin):
                if up == 1:
                    acc = acc + signal.correlate2d(x[b, i], wb[o, i], mode="same")
                else:  # transposed stride-2 convolution == zero insertion + full convolution
                    z = np.zeros((2 * h - 1, 2 * w - 1))
                    z[::2, ::2] = x[b, i]
                    acc = acc + signal.convolve2d(z, wb[o, i], mode="full")
            if up == 2:
                acc = np_fir_up2_from_full(acc)
            chans.append(acc)
        out.append(np.stack(chans))
    return np.stack(out)


def np_fir_up2_from_full(y: np.ndarray) -> np.ndarray:
    f = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0 * 4
    return signal.convolve2d(np.pad(y, 1), f, mode="valid")


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_matches_numpy(up, fused):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 6))
    weight = rng.standard_normal((4, 3, 3, 3))
    styles = rng.standard_normal((2, 3))
    y = modulated_conv2d(
        torch.tensor(x), torch.tensor(weight), torch.tensor(styles), up=up,
        resample_filter=setup_filter().double(), fused=fused,
    ).numpy()
    ref = np_modulated_conv(x, weight, styles, up=up)
    assert y.shape == ref.shape == (2, 4, 6 * up, 6 * up)
    np.testing.assert_allclose(y, ref, atol=1e-10)


def test_modulated_conv2d_without_demodulation_and_noise():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 4, 4))
    weight = rng.standard_normal((3, 2, 1, 1))
    styles = rng.standard_normal((1, 2))
    noise = rng.standard_normal((1, 1, 4, 4))
    y = modulated_conv2d(torch.tensor(x), torch.tensor(weight), torch.tensor(styles), noise=torch.tensor(noise),
                         demodulate=False)
    ref = np_modulated_conv(x, weight, styles, demodulate=False) + noise
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-10)
    with pytest.raises(ValueError, match="styles must have shape"):
        modulated_conv2d(torch.tensor(x), torch.tensor(weight), torch.ones(2, 2, dtype=torch.float64))


def test_fully_connected_layer_and_pixel_norm_match_numpy():
    torch.manual_seed(0)
    layer = FullyConnectedLayer(5, 4, activation="lrelu", lr_multiplier=0.01, bias_init=0.5).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(3, 5, dtype=torch.float64)
    W = layer.weight.detach().numpy() * 0.01 / math.sqrt(5)
    b = layer.bias.detach().numpy() * 0.01
    pre = x.numpy() @ W.T + b
    ref = np.where(pre > 0, pre, 0.2 * pre) * math.sqrt(2)
    np.testing.assert_allclose(layer(x).detach().numpy(), ref, atol=1e-12)
    xn = normalize_2nd_moment(x).numpy()
    np.testing.assert_allclose(xn, x.numpy() / np.sqrt((x.numpy() ** 2).mean(1, keepdims=True) + 1e-8), atol=1e-12)


@pytest.mark.parametrize("res,channels", [(8, 1), (16, 3), (32, 1), (64, 3)])
def test_shapes_and_num_ws(res, channels):
    G = StyleGAN2Generator(tiny_config(res, channels))
    assert G.num_ws == 2 * int(math.log2(res)) - 2
    z = torch.randn(2, G.z_dim)
    ws = G.mapping(z)
    assert ws.shape == (2, G.num_ws, G.w_dim)
    img = G.synthesis(ws)
    assert img.shape == (2, channels, res, res)
    assert torch.isfinite(img).all()
    assert isinstance(G, PriorGenerator)


def test_channel_schedule_of_config_f_at_1024():
    assert channel_schedule(1024, 32768, 512) == {
        4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32,
    }


@pytest.mark.parametrize("batch", [1, 3])
def test_fused_and_non_fused_synthesis_agree(batch):
    torch.manual_seed(1)
    G = StyleGAN2Generator(tiny_config(16, 3)).double()
    with torch.no_grad():  # non-zero noise strengths exercise the noise path too
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
    ws = G.mapping(torch.randn(batch, G.z_dim, dtype=torch.float64))
    a = G.synthesis(ws, fused_modconv=True)
    b = G.synthesis(ws, fused_modconv=False)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    torch.testing.assert_close(G.synthesis(ws), a, rtol=0, atol=1e-10)  # automatic choice


def test_noise_modes():
    torch.manual_seed(2)
    G = StyleGAN2Generator(tiny_config(16, 1))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    ws = G.mapping(torch.randn(2, G.z_dim))
    const1, const2 = G.synthesis(ws), G.synthesis(ws)
    assert torch.equal(const1, const2)  # deterministic by default
    assert not torch.allclose(G.synthesis(ws, noise_mode="random"), const1)
    assert not torch.allclose(G.synthesis(ws, noise_mode="none"), const1)
    G.noise_mode = "none"
    assert torch.equal(G.synthesis(ws), G.synthesis(ws, noise_mode="none"))
    with pytest.raises(ValueError, match="noise_mode"):
        G.noise_mode = "sometimes"


def test_bad_inputs_raise_clear_errors():
    G = StyleGAN2Generator(tiny_config(16, 1))
    with pytest.raises(ValueError, match=r"ws must have shape \(B, 6, 16\)"):
        G.synthesis(torch.randn(1, 5, 16))
    with pytest.raises(ValueError, match="z must have shape"):
        G.mapping(torch.randn(1, 3))
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Generator(tiny_config(48, 1))
    with pytest.raises(ValueError, match="img_channels"):
        StyleGAN2Generator(tiny_config(16, 2))


def test_truncation_psi_zero_gives_w_avg():
    G = StyleGAN2Generator(tiny_config(16, 1))
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    ws = G.mapping(torch.randn(3, G.z_dim), truncation_psi=0.0)
    torch.testing.assert_close(ws, G.w_avg.expand(3, G.num_ws, -1))
    ws = G.mapping(torch.randn(3, G.z_dim), truncation_psi=0.0, truncation_cutoff=2)
    torch.testing.assert_close(ws[:, :2], G.w_avg.expand(3, 2, -1))
    assert not torch.allclose(ws[:, 2:], G.w_avg.expand(3, G.num_ws - 2, -1))


def test_latent_stats_match_direct_computation_and_are_cached():
    torch.manual_seed(3)
    G = StyleGAN2Generator(tiny_config(16, 1))
    stats = G.latent_stats(num_samples=2500, seed=7, chunk_size=1000)
    assert isinstance(stats, LatentStats)
    z = torch.randn(2500, G.z_dim, generator=torch.Generator().manual_seed(7))
    w = G.mapping(z)[:, 0].detach().double().numpy()
    np.testing.assert_allclose(stats.mean.numpy(), w.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.std.numpy(), w.std(0), rtol=1e-4, atol=1e-6)
    scalar = np.sqrt(((w - w.mean(0)) ** 2).sum(1).mean())
    np.testing.assert_allclose(stats.std_scalar.item(), scalar, rtol=1e-5)
    assert G.latent_stats(num_samples=2500, seed=7) is stats
    with torch.no_grad():
        G.mapping.fc0.weight.mul_(2)
    assert G.latent_stats(num_samples=2500, seed=7) is not stats  # weights changed: recomputed


def test_double_precision_and_gradients():
    torch.manual_seed(4)
    G = StyleGAN2Generator(tiny_config(16, 1))
    ws = G.mapping(torch.randn(2, G.z_dim)).detach()
    img32 = G.synthesis(ws)
    G64 = StyleGAN2Generator(tiny_config(16, 1))
    G64.load_state_dict(G.state_dict())
    G64 = G64.double()
    img64 = G64.synthesis(ws.double())
    assert img64.dtype == torch.float64 and G64.dtype == torch.float64
    torch.testing.assert_close(img64.float(), img32, rtol=1e-4, atol=1e-4)
    ws.requires_grad_(True)
    G.synthesis(ws).square().sum().backward()
    assert torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


def test_linear_generator_is_affine_and_has_known_latent_stats():
    G = LinearGenerator.random(num_ws=2, w_dim=3, img_resolution=4, seed=0)
    ws = torch.randn(5, 2, 3)
    img = G.synthesis(ws)
    ref = ws.reshape(5, -1) @ G.A.t() + G.b
    torch.testing.assert_close(img.reshape(5, -1), ref)
    stats = G.latent_stats(num_samples=20000, seed=0)
    torch.testing.assert_close(stats.mean, torch.zeros(3), atol=0.03, rtol=0)  # mapping is the identity
    torch.testing.assert_close(stats.std, torch.ones(3), atol=0.03, rtol=0)
    with pytest.raises(ValueError, match="A must have shape"):
        LinearGenerator(torch.zeros(3, 3), torch.zeros(16), 2, 3, 4)
