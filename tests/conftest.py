"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch

from brgm_pyro.generators import StyleGAN2Config, StyleGAN2Generator


@pytest.fixture
def one_thread():
    """One torch thread for the test (the CLI, data-set and calibration tests run many small
    steps, which extra threads only slow down on a shared machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config(img_resolution: int = 16, img_channels: int = 1) -> StyleGAN2Config:
    """A StyleGAN2 small enough for unit tests (about 0.1 M parameters)."""
    return StyleGAN2Config(
        img_resolution=img_resolution, img_channels=img_channels, z_dim=16, w_dim=16,
        mapping_layers=2, channel_base=256, channel_max=32,
    )


@pytest.fixture
def tiny_generator() -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(tiny_config()).eval()
