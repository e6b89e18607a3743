"""Lloyd's k-means shared by the front-door dictionary and the codebook re-fit."""

from __future__ import annotations

import torch

from models.kmeans import euclidean_nearest, lloyd


def test_two_clusters_end_at_their_means_and_an_empty_cluster_keeps_its_centroid() -> None:
    x = torch.tensor([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.0, 5.4]])
    start = torch.tensor([[0.1, 0.1], [4.0, 4.0], [100.0, 100.0]])  # the third wins no row
    centroids, sizes = lloyd(x, start.clone(), iters=3)
    torch.testing.assert_close(centroids, torch.tensor([[0.1, 0.0], [5.0, 5.2], [100.0, 100.0]]))
    assert sizes.tolist() == [2.0, 2.0, 0.0]


def test_the_callers_nearest_rule_decides_the_assignment() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [9.0, 0.0]])
    start = torch.tensor([[0.0, 0.0], [9.0, 0.0]])
    calls = []

    def everything_on_the_first(rows: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
        calls.append(centroids.shape[0])
        return torch.zeros(rows.shape[0], dtype=torch.long)

    centroids, sizes = lloyd(x, start.clone(), iters=2, nearest=everything_on_the_first)
    assert calls == [2, 2] and sizes.tolist() == [3.0, 0.0]
    torch.testing.assert_close(centroids[0], x.mean(0))
    assert euclidean_nearest(x, start).tolist() == [0, 0, 1]
