"""A linear-Gaussian generator G(w) = A vec(w) + b, for tests and teaching with exact answers.

With a Gaussian prior on w and a Gaussian pixel likelihood behind a linear corruption, the
BRGM posterior is Gaussian and known in closed form, so MAP, VI and MCMC can be checked.
"""

from __future__ import annotations

import torch

from .base import GeneratorBase


class LinearGenerator(GeneratorBase):
    """G(w) = reshape(A vec(w) + b, (C, R, R)); mapping(z) = z M^T + m on every layer.

    A: (C*R*R, num_ws*w_dim); b: (C*R*R,); M: (w_dim, z_dim); m: (w_dim,).
    """

    def __init__(
        self,
        A: torch.Tensor,
        b: torch.Tensor,
        num_ws: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int = 1,
        map_matrix: torch.Tensor | None = None,
        map_offset: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        out_dim = img_channels * img_resolution * img_resolution
        if A.shape != (out_dim, num_ws * w_dim):
            raise ValueError(f"A must have shape {(out_dim, num_ws * w_dim)}, got {tuple(A.shape)}")
        if b.shape != (out_dim,):
            raise ValueError(f"b must have shape {(out_dim,)}, got {tuple(b.shape)}")
        self.num_ws, self.w_dim = num_ws, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        M = torch.eye(w_dim) if map_matrix is None else map_matrix
        self.z_dim = M.shape[1]
        m = torch.zeros(w_dim) if map_offset is None else map_offset
        self.register_buffer("A", A.clone())
        self.register_buffer("b", b.clone())
        self.register_buffer("map_matrix", M.clone())
        self.register_buffer("map_offset", m.clone())

    @classmethod
    def random(
        cls, num_ws: int = 2, w_dim: int = 3, img_resolution: int = 4, img_channels: int = 1,
        scale: float = 0.3, seed: int = 0,
    ) -> "LinearGenerator":
        g = torch.Generator().manual_seed(seed)
        out_dim = img_channels * img_resolution * img_resolution
        A = torch.randn(out_dim, num_ws * w_dim, generator=g) * scale
        b = torch.randn(out_dim, generator=g) * 0.1
        return cls(A, b, num_ws, w_dim, img_resolution, img_channels)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        flat = ws.reshape(ws.shape[0], -1) @ self.A.t() + self.b
        return flat.reshape(ws.shape[0], self.img_channels, self.img_resolution, self.img_resolution)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        w = z @ self.map_matrix.t() + self.map_offset
        return w.unsqueeze(1).expand(-1, self.num_ws, -1)

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return self.synthesis(ws)
