"""Perceptual features: the squared feature distance equals the lpips package's LPIPS."""

from __future__ import annotations

import lpips
import pytest
import torch
from torch import nn

from brgm_pyro.perceptual import FeatureNetwork, LPIPSFeatures, MissingWeightsError, build_lpips


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_squared_feature_distance_equals_lpips(net):
    torch.manual_seed(0)
    phi = LPIPSFeatures(net, resize=64, pretrained=False)
    reference = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    reference.net.load_state_dict(phi.lpips.net.state_dict())  # same random backbone
    x, y = torch.rand(3, 3, 48, 48) * 2 - 1, torch.rand(3, 3, 48, 48) * 2 - 1
    ours = (phi(x) - phi(y)).square().sum(dim=1)
    theirs = reference(phi.prepare(x), phi.prepare(y)).flatten()
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_grayscale_is_repeated_and_resize_is_applied():
    phi = LPIPSFeatures("vgg", resize=32, pretrained=False)
    g = torch.rand(2, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(phi(g), phi(g.expand(-1, 3, -1, -1)))
    assert phi.prepare(g).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"\(B, 1 or 3, H, W\)"):
        phi(torch.zeros(2, 2, 16, 16))


def test_missing_backbone_weights_name_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(MissingWeightsError) as info:
        build_lpips("vgg")
    message = str(info.value)
    assert "vgg16-397923af.pth" in message and str(tmp_path / "checkpoints") in message and "weights=" in message
    with pytest.raises(ValueError, match="unknown LPIPS network"):
        build_lpips("resnet", pretrained=False)


def test_explicit_weights_file_is_loaded(tmp_path):
    import torchvision

    torch.manual_seed(1)
    tv = torchvision.models.alexnet(weights=None)
    torch.save(tv.state_dict(), tmp_path / "alex.pth")
    model = build_lpips("alex", weights=tmp_path / "alex.pth")
    torch.testing.assert_close(model.net.slice1[0].weight, tv.features[0].weight)
    torch.save({"something": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="features.0.weight"):
        build_lpips("alex", weights=tmp_path / "bad.pth")


def test_feature_network_is_layerwise_mean_squared_difference():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    phi = FeatureNetwork(net, ["1", "2"])
    x, y = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    a1, b1 = net[1](net[0](x)), net[1](net[0](y))
    a2, b2 = net[2](a1), net[2](b1)
    expected = (a1 - b1).square().mean(dim=[1, 2, 3]) + (a2 - b2).square().mean(dim=[1, 2, 3])
    torch.testing.assert_close((phi(x) - phi(y)).square().sum(1), expected)
    assert not any(p.requires_grad for p in net.parameters())
    phi.train()
    assert not net.training
    with pytest.raises(ValueError, match="not in the module"):
        FeatureNetwork(net, ["fc"])
