"""Sampled MMD between two sets of actions per state, with gaussian or laplacian kernels.

BEAR constrains the policy's support with the (biased, V-statistic) squared MMD estimate of
Gretton et al. (2012), computed per state from N samples of each distribution (BEAR, Sec. 5):

    MMD^2(X, Y) = mean_{i,j} k(x_i, x_j) + mean_{i,j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j)

and uses ``sqrt(MMD^2 + 1e-6)``, as the original code does.

Kernels, with the ORIGINAL code's bandwidth convention (results depend on it, so we keep it):

- gaussian:  k(x, y) = exp(-||x - y||_2^2 / (2 * sigma))   (sigma acts as a variance, not a std)
- laplacian: k(x, y) = exp(-||x - y||_1   / (2 * sigma))
"""

from __future__ import annotations

import torch

KERNELS = ("gaussian", "laplacian")


def mmd(
    x: torch.Tensor, y: torch.Tensor, kernel: str = "laplacian", sigma: float = 20.0
) -> torch.Tensor:
    """Per-state sampled MMD between ``x`` [B, N, A] and ``y`` [B, M, A]; returns [B].

    All three kernel means come from one pairwise computation over the stacked samples.
    """
    n = x.shape[-2]
    z = torch.cat([x, y], dim=-2)  # [B, N+M, A]
    diff = z.unsqueeze(-2) - z.unsqueeze(-3)  # [B, N+M, N+M, A]
    if kernel == "gaussian":
        k = torch.exp(-diff.pow(2).sum(-1) / (2.0 * sigma))
    elif kernel == "laplacian":
        k = torch.exp(-diff.abs().sum(-1) / (2.0 * sigma))
    else:
        raise ValueError(f"unknown kernel '{kernel}' (choose from {KERNELS})")
    k_xx = k[..., :n, :n].mean((-2, -1))
    k_yy = k[..., n:, n:].mean((-2, -1))
    k_xy = k[..., :n, n:].mean((-2, -1))
    return torch.sqrt(k_xx + k_yy - 2.0 * k_xy + 1e-6)
