"""brgm_pyro.functional: each helper against an independent computation, and its callers use it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.signal import windows

from brgm_pyro.assets import FASHION_MNIST_CLASSES
from brgm_pyro.corruptions import Blur, SuperResolution
from brgm_pyro.functional import channel_schedule, gaussian_kernel_1d, image_shape, mean_squared_error_255, rmse_255
from brgm_pyro.generators import LinearGenerator, StyleGAN2Generator
from brgm_pyro.metrics import psnr, rmse
from brgm_pyro.training.discriminator import Discriminator
from brgm_pyro.training.trainer import save_sample_grid

from .conftest import tiny_config


def scipy_gaussian(sigma: float, size: int) -> np.ndarray:
    w = windows.gaussian(size, sigma)  # exp(-n^2 / (2 sigma^2)), n centred on (size - 1) / 2
    return w / w.sum()


@pytest.mark.parametrize("sigma, size", [(0.7, 5), (1.5, 11), (2.0, 8)])
def test_gaussian_kernel_matches_scipy_window(sigma, size):
    k = gaussian_kernel_1d(sigma, size)
    assert k.dtype == torch.float64 and k.shape == (size,)
    np.testing.assert_allclose(k.numpy(), scipy_gaussian(sigma, size), rtol=1e-12, atol=0)


def test_gaussian_kernels_of_a_batch_of_sigmas_are_differentiable():
    sigma = torch.tensor([0.8, 1.3, 2.1], dtype=torch.float64, requires_grad=True)
    k = gaussian_kernel_1d(sigma, 9)
    assert k.shape == (3, 9)
    for row, s in zip(k.detach(), sigma.tolist()):
        np.testing.assert_allclose(row.numpy(), scipy_gaussian(s, 9), rtol=1e-12, atol=0)
    assert torch.autograd.gradcheck(lambda s: gaussian_kernel_1d(s, 9), (sigma,))
    with pytest.raises(ValueError, match="kernel size"):
        gaussian_kernel_1d(1.0, 0)


def test_blur_and_super_resolution_kernels_are_that_gaussian():
    blur = Blur.gaussian(1.2)  # size 2 ceil(3.6) + 1 = 9
    np.testing.assert_allclose(blur.kernel.double().numpy(), np.outer(*[scipy_gaussian(1.2, 9)] * 2), atol=1e-7)
    sr = SuperResolution(4, "gaussian", sigma=1.5)  # support factor + 2 ceil(2 sigma) = 10
    np.testing.assert_allclose(sr.weights.double().numpy(), np.outer(*[scipy_gaussian(1.5, 10)] * 2), atol=1e-7)


def test_rmse_255_against_numpy_with_and_without_a_mask():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (2, 3, 5, 5)), rng.uniform(-1, 1, (2, 3, 5, 5))
    mask = rng.random((2, 1, 5, 5)) < 0.4
    x255, y255 = (x + 1) * 127.5, (y + 1) * 127.5
    tx, ty = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    x255f, y255f = (tx.double().numpy() + 1) * 127.5, (ty.double().numpy() + 1) * 127.5
    assert float(rmse_255(tx, ty)) == pytest.approx(np.sqrt(np.mean((x255f - y255f) ** 2)), rel=1e-12)
    per_image = [np.sqrt(np.mean((x255[i] - y255[i]) ** 2)) for i in range(2)]
    np.testing.assert_allclose(rmse_255(torch.tensor(x), torch.tensor(y), dim=(1, 2, 3)).numpy(), per_image,
                               rtol=1e-12)
    full_mask = np.broadcast_to(mask, x.shape)
    masked = [np.sqrt(np.mean((x255[i] - y255[i])[full_mask[i]] ** 2)) for i in range(2)]
    np.testing.assert_allclose(rmse_255(torch.tensor(x), torch.tensor(y), torch.tensor(mask), dim=(1, 2, 3)).numpy(),
                               masked, rtol=1e-12)
    assert torch.isnan(rmse_255(torch.tensor(x), torch.tensor(y), torch.zeros(1, 1, 5, 5))), "an empty mask: NaN"
    # the metrics are this function
    torch.testing.assert_close(rmse(tx, ty), rmse_255(tx, ty, dim=(1, 2, 3)), rtol=0, atol=0)
    mse = mean_squared_error_255(tx, ty, dim=(1, 2, 3))
    torch.testing.assert_close(psnr(tx, ty), 10 * torch.log10(255.0**2 / mse), rtol=0, atol=0)
    with pytest.raises(ValueError, match="same shape"):
        rmse_255(tx, ty[:1])


def test_channel_schedule_drives_the_discriminator():
    assert channel_schedule(32, 256, 64) == {4: 64, 8: 32, 16: 16, 32: 8}
    d = Discriminator(32, 1, channel_base=256, channel_max=64)
    # blocks at 32, 16, 8: channels (res) -> (res / 2)
    assert [(b.conv0.weight.shape[0], b.conv1.weight.shape[0]) for b in d.blocks] == [(8, 16), (16, 32), (32, 64)]
    assert d.conv.weight.shape[:2] == (64, 65)  # 4x4 block: 64 channels + minibatch std


def test_image_shape_is_what_synthesis_returns():
    G = StyleGAN2Generator(tiny_config(img_resolution=8, img_channels=3))
    assert image_shape(G) == tuple(G.synthesis(torch.zeros(1, G.num_ws, G.w_dim)).shape[1:]) == (3, 8, 8)
    lin = LinearGenerator.random(img_resolution=4, img_channels=1)
    assert image_shape(lin) == tuple(lin.synthesis(torch.zeros(1, 2, 3)).shape[1:]) == (1, 4, 4)


def test_training_sample_grid_tiles_images_edge_to_edge(tmp_path):
    class Fixed(torch.nn.Module):
        def forward(self, z, noise_mode="const"):
            return z

    images = torch.rand(5, 1, 4, 3) * 2 - 1
    save_sample_grid(Fixed(), images, tmp_path / "grid.png")
    got = np.asarray(Image.open(tmp_path / "grid.png"))
    cols = math.ceil(math.sqrt(5))  # 3 columns, 2 rows; the empty cell is black (-1)
    u8 = ((images[:, 0].numpy() + 1) * 127.5).round().astype(np.uint8)
    expected = np.zeros((2 * 4, cols * 3), dtype=np.uint8)
    for i in range(5):
        r, c = divmod(i, cols)
        expected[r * 4:(r + 1) * 4, c * 3:(c + 1) * 3] = u8[i]
    np.testing.assert_array_equal(got, expected)


def test_class_names_have_one_home():
    import brgm_pyro.bundled as bundled
    import brgm_pyro.training.data as data

    # brgm_pyro.assets holds them; the modules that once re-exported them do not
    assert not hasattr(data, "FASHION_MNIST_CLASSES") and not hasattr(bundled, "FASHION_MNIST_CLASSES")
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[9] == "Ankle boot"
