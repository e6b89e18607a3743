"""Lloyd's k-means from given starting centroids, with the caller's nearest-centroid rule.

Shared by the front-door's item dictionary (models/frontdoor.py `kmeans`, Euclidean `cdist`) and
the back-door codebook's re-fit (models/vq.py `VectorQuantizer.refit_`, which assigns with
the level's own chunked `nearest` so the re-fitted codes are what the level would pick). The
callers choose the starting rows, because they draw them differently (global RNG vs an
epoch-seeded generator) and one of them must return exactly K centroids even from fewer rows.
"""

from __future__ import annotations

from typing import Callable

import torch


def euclidean_nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid of every row of x (one [N, K] distance matrix)."""
    return torch.cdist(x, centroids).argmin(1)


@torch.no_grad()
def lloyd(x: torch.Tensor, centroids: torch.Tensor, iters: int,
          nearest: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = euclidean_nearest,
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids [K, d], cluster sizes [K] of the last round's assignment) after max(iters, 1) rounds
    of assign-then-average from `centroids`; an empty cluster keeps its centroid."""
    for _ in range(max(iters, 1)):
        idx = nearest(x, centroids)
        sizes = torch.bincount(idx, minlength=centroids.shape[0]).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, idx, x)
        centroids = torch.where(sizes[:, None] > 0, sums / sizes.clamp_min(1)[:, None], centroids)
    return centroids, sizes
