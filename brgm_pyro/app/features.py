"""The perceptual feature network phi of a reconstruction, chosen by name (``--features``).

    features = build_features("auto", G)
    model = brgm_model(G, corruption, observation, features=features)

Running the methods on the model is ``brgm_pyro.inference.run_method`` / ``run_methods``.
"""

from __future__ import annotations

import torch

from ..bundled import load_domain_features
from ..choices import FEATURE_CHOICES
from ..generators import PriorGenerator
from ..perceptual import LPIPSFeatures



def build_features(kind: str, generator: PriorGenerator, device: torch.device | str = "cpu") -> torch.nn.Module | None:
    """phi for the perceptual likelihood.

    "domain": the bundled Fashion-MNIST classifier's features (for the bundled generator);
    "lpips-vgg" / "lpips-alex": LPIPS features (need torchvision's backbone weights);
    "auto": the generator's own recommendation (``metadata["feature_network"]``), else LPIPS-VGG;
    "none": no perceptual term.
    """
    if kind not in FEATURE_CHOICES:
        raise ValueError(f"unknown feature network {kind!r}; choose from {', '.join(FEATURE_CHOICES)}")
    if kind == "auto":
        recommended = getattr(generator, "metadata", {}).get("feature_network")
        kind = "domain" if recommended == "fashion-mnist-classifier" else "lpips-vgg"
    if kind == "none":
        return None
    if kind == "domain":
        if (generator.img_channels, generator.img_resolution) != (1, 32):
            raise ValueError("the domain feature network is for 32x32 grayscale images (the bundled generator); "
                             "use --features lpips-vgg or none for this generator")
        return load_domain_features(device)
    return LPIPSFeatures(net=kind.split("-")[1], resize=256).to(device)
