"""Perceptual features: the squared feature distance equals the lpips package's LPIPS."""

from __future__ import annotations

import lpips
import pytest
import torch
from torch import nn

from brgm_pyro.perceptual import FeatureNetwork, LPIPSFeatures, MissingWeightsError, _skip_random_init, build_lpips


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny CNN passes run ~30x faster on one thread when the cores are shared (no oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vgg_features() -> LPIPSFeatures:
    torch.manual_seed(0)
    return LPIPSFeatures("vgg", resize=16, pretrained=False)


@pytest.fixture(scope="module")
def alex_features() -> LPIPSFeatures:
    torch.manual_seed(0)
    return LPIPSFeatures("alex", resize=64, pretrained=False)


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_squared_feature_distance_equals_lpips(net, request):
    """phi.lpips is an ``lpips.LPIPS`` object: its own forward is the reference distance."""
    phi = request.getfixturevalue(f"{net}_features")
    assert isinstance(phi.lpips, lpips.LPIPS)
    torch.manual_seed(1)
    size = phi.resize
    x, y = torch.rand(2, 3, size, size) * 2 - 1, torch.rand(2, 3, size, size) * 2 - 1
    ours = (phi(x) - phi(y)).square().sum(dim=1)
    theirs = phi.lpips(x, y).flatten()
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    assert torch.all(theirs > 0)
    # Larger images are area-downsampled first; the distance is LPIPS of the downsampled pair.
    big_x = x.repeat_interleave(2, -1).repeat_interleave(2, -2)
    big_y = y.repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close((phi(big_x) - phi(big_y)).square().sum(dim=1), theirs, rtol=1e-4, atol=1e-6)


def test_features_of_a_fresh_lpips_with_the_same_backbone(alex_features):
    with _skip_random_init():  # every backbone tensor is overwritten below; lin weights come from lpips
        reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    reference.net.load_state_dict(alex_features.lpips.net.state_dict())
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    ours = (alex_features(x) - alex_features(y)).square().sum(dim=1)
    torch.testing.assert_close(ours, reference(x, y).flatten().detach(), rtol=1e-4, atol=1e-6)
    assert torch.nn.init.normal_(torch.zeros(100)).std() > 0  # torch.nn.init is restored after building


def test_grayscale_is_repeated_and_only_larger_images_are_resized(vgg_features):
    phi = vgg_features
    g = torch.rand(2, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(phi(g), phi(g.expand(-1, 3, -1, -1)))
    small = torch.zeros(2, 1, 8, 8)
    assert phi.prepare(small).shape == (2, 3, 8, 8)  # smaller than resize: kept (as the authors do)
    assert phi.prepare(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 16, 16)
    phi.upsample = True
    try:
        assert phi.prepare(small).shape == (2, 3, 16, 16)
    finally:
        phi.upsample = False
    with pytest.raises(ValueError, match=r"\(B, 1 or 3, H, W\)"):
        phi(torch.zeros(2, 2, 16, 16))


def test_features_are_differentiable_in_the_image(alex_features):
    x = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_(True)
    target = alex_features(torch.zeros(1, 3, 64, 64))
    (alex_features(x) - target).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in alex_features.parameters())


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
    with torch.device("meta"):  # torchvision's parameter names and shapes, without the slow init
        names = {k: v.shape for k, v in torchvision.models.alexnet(weights=None).state_dict().items()}
    state = {k: torch.randn(shape) for k, shape in names.items() if k.startswith("features.")}
    torch.save(state, tmp_path / "alex.pth")
    model = build_lpips("alex", weights=tmp_path / "alex.pth")
    torch.testing.assert_close(model.net.slice1[0].weight, state["features.0.weight"])
    torch.testing.assert_close(getattr(model.net.slice5, "10").bias, state["features.10.bias"])  # last conv
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
