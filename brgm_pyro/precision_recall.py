"""Precision and recall of a generator in an embedding (Kynkaanniemi et al., "Improved Precision and Recall
Metric for Assessing Generative Models", NeurIPS 2019).

Each set's manifold is the union of balls around its points, each ball's radius the distance to that point's
k-th nearest neighbour within its own set.  Precision: the fraction of generated points inside the real
images' manifold (are the samples realistic?).  Recall: the fraction of real points inside the generated
images' manifold (does the generator make every kind of real image?).  The Frechet distance mixes both.
"""

from __future__ import annotations

import torch


def knn_radii(features: torch.Tensor, k: int = 3, chunk: int = 1000) -> torch.Tensor:
    """(N,) distance of each row of ``features`` (N, F) to its k-th nearest other row."""
    if not 1 <= k < len(features):
        raise ValueError(f"k must be in 1..{len(features) - 1} (the other points), got {k}")
    radii = torch.empty(len(features), dtype=torch.float64)
    f = features.double()
    for i in range(0, len(f), chunk):
        # the point itself is at distance 0, its own nearest neighbour: the k-th other one is the (k+1)-th value
        radii[i:i + chunk] = torch.cdist(f[i:i + chunk], f).kthvalue(k + 1, dim=1).values
    return radii


def coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1000) -> float:
    """Fraction of ``points`` (N, F) inside at least one ball (``centres`` (M, F), ``radii`` (M,))."""
    inside = torch.zeros(len(points), dtype=torch.bool)
    p, c = points.double(), centres.double()
    for i in range(0, len(p), chunk):
        inside[i:i + chunk] = (torch.cdist(p[i:i + chunk], c) <= radii[None]).any(1)
    return inside.double().mean().item()


def precision_recall(generated: torch.Tensor, real: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of ``generated`` against ``real`` features, both (N, F), with k-NN balls (k 3 as the
    paper recommends)."""
    if generated.ndim != 2 or real.ndim != 2 or generated.shape[1] != real.shape[1]:
        raise ValueError(f"features must be (N, F) with the same F, got {tuple(generated.shape)} and "
                         f"{tuple(real.shape)}")
    precision = coverage(generated, real, knn_radii(real, k))
    recall = coverage(real, generated, knn_radii(generated, k))
    return precision, recall
