"""Frozen item-item kNN graphs from content features (LATTICE / FREEDOM).

FREEDOM (Zhou et al., "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", ACM MM 2023, eq. 1-3) builds, once and from the raw features of each
modality m, the cosine-similarity graph of the items sparsified to each item's top-k neighbours,
``S^m_ij = 1 if j in topk_j(cos(f_i, f_j)) else 0``, normalises it as
``S~^m = D^-1/2 S^m D^-1/2`` with D the diagonal of S^m's row sums, and mixes the modalities,
``S = sum_m w_m S~^m``.

Cost. The dense similarity matrix is never formed: rows are scored in blocks of `row_chunk`
items against column blocks of `col_chunk` items with one matmul each, and a running top-k per
row is merged block by block. Time O(I^2 d) for the matmuls plus O(I^2 (1 + k / col_chunk)) for
the top-k selections; peak extra memory O(row_chunk * (col_chunk + k)) floats, independent of I
(two blocks of 64 MiB at the defaults), besides the O(I d) normalised features and the O(I k)
result. Chunking bounds memory, not work: ceil(I / row_chunk) x ceil(I / col_chunk) block matmuls of
O(row_chunk * col_chunk * d) each, i.e. O(I^2 d / (row_chunk * col_chunk)) blocks of fixed cost and
O(I^2 d) in all; this is the one cost of the models that grows with the square of the catalog
(built once per run; docs/BENCHMARKS.md times it). A million 128-d items is about 1.3e14
multiply-adds: hours on a few CPU cores, minutes on a GPU, in the same bounded memory.

Ties in similarity (duplicate feature rows) may be broken differently from a dense
`torch.topk` over a whole row; the selected *similarities* are the same.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def knn_indices(features: torch.Tensor, k: int, *, self_loops: bool = True, row_chunk: int = 1024,
                col_chunk: int = 16384) -> torch.Tensor:
    """[I, k] int64: for every item the indices of its k most cosine-similar items.

    Args:
        features: [I, F] float item features (row i = item i). Zero rows get cosine 0 with every
            item (F.normalize leaves them zero) instead of NaN.
        k: neighbours per item; must be at most I (I - 1 without self-loops).
        self_loops: if True the item competes for its own top-k slots like any other item, so it
            is (barring duplicate rows) one of its k neighbours, as in the reference MMRec code;
            if False it is excluded and all k neighbours are other items.
        row_chunk, col_chunk: block sizes of the scoring (memory ~ row_chunk x col_chunk floats).
    """
    if features.ndim != 2:
        raise ValueError(f"knn_indices: features must be [items, dim], got shape {tuple(features.shape)}")
    num_items = features.shape[0]
    limit = num_items if self_loops else num_items - 1
    if not 0 < k <= limit:
        raise ValueError(f"knn_indices: k must be in [1, {limit}] for {num_items} items "
                         f"({'with' if self_loops else 'without'} self-loops), got {k}")
    if row_chunk <= 0 or col_chunk <= 0:
        raise ValueError(f"knn_indices: chunk sizes must be positive, got {row_chunk=}, {col_chunk=}")
    unit = F.normalize(features.float(), dim=1)
    out = torch.empty(num_items, k, dtype=torch.int64, device=features.device)
    for start in range(0, num_items, row_chunk):
        rows = unit[start:start + row_chunk]
        rows_idx = torch.arange(start, start + rows.shape[0], device=features.device)
        best_val = torch.full((rows.shape[0], 0), float("-inf"), device=features.device)
        best_idx = torch.empty((rows.shape[0], 0), dtype=torch.int64, device=features.device)
        for col in range(0, num_items, col_chunk):
            sim = rows @ unit[col:col + col_chunk].T
            if not self_loops:
                cols_idx = torch.arange(col, col + sim.shape[1], device=features.device)
                sim.masked_fill_(rows_idx[:, None] == cols_idx[None, :], float("-inf"))
            # Merge this block into the running top-k: the top-k of a union is the top-k of (the
            # first set's top-k) and (the second set). Positions < kept point into the running
            # list, the rest into this block, so no [rows, cols] index matrix is materialised.
            kept = best_val.shape[1]
            best_val, pos = torch.cat([best_val, sim], dim=1).topk(min(k, kept + sim.shape[1]), dim=1)
            from_block = pos - kept + col
            if kept:
                best_idx = torch.where(pos < kept, best_idx.gather(1, pos.clamp(max=kept - 1)), from_block)
            else:
                best_idx = from_block
        out[start:start + rows.shape[0]] = best_idx
    return out


def normalised_knn_graph(neighbours: torch.Tensor) -> torch.Tensor:
    """D^-1/2 S D^-1/2 of the 0/1 kNN matrix S (S_ij = 1 iff j in neighbours[i]), coalesced COO.

    D holds S's row sums (the paper's and MMRec's degree): every row has exactly k entries, so
    each stored value is 1/k. The graph is directed (j may be a neighbour of i but not i of j);
    `torch.sparse.mm(S, h)` therefore averages each item's own neighbours.
    """
    num_items, k = neighbours.shape
    rows = torch.arange(num_items, device=neighbours.device).repeat_interleave(k)
    cols = neighbours.reshape(-1)
    degree = torch.bincount(rows, minlength=num_items).double()
    inv_sqrt = degree.clamp(min=1).rsqrt()  # every row has k >= 1 entries: no 0-degree row
    values = (inv_sqrt[rows] * inv_sqrt[cols]).float()
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (num_items, num_items),
                                   check_invariants=True).coalesce()


def mixed_knn_graph(features: Mapping[str, torch.Tensor], weights: Mapping[str, float], k: int, *,
                    self_loops: bool = True, row_chunk: int = 1024, col_chunk: int = 16384) -> torch.Tensor:
    """sum_m w_m S~^m over the modalities in `weights` (w normalised to sum 1), [I, I] coalesced COO.

    FREEDOM with two modalities uses w_image = `mm_image_weight`, w_text = 1 - w_image; any
    set of named modalities generalises it. Weights must be >= 0 with a positive sum; a modality
    of weight 0 is skipped (its graph would contribute nothing).
    """
    missing = sorted(set(weights) - set(features))
    if missing or not weights:
        raise ValueError(f"mixed_knn_graph: weights name modalities {missing or '(none)'}; "
                         f"features have {sorted(features)}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"mixed_knn_graph: weights must be >= 0 with a positive sum, got {dict(weights)}")
    total = float(sum(weights.values()))
    graph = None
    for name in sorted(weights):
        if weights[name] == 0:
            continue
        part = normalised_knn_graph(knn_indices(features[name], k, self_loops=self_loops,
                                                row_chunk=row_chunk, col_chunk=col_chunk))
        part = part * (weights[name] / total)
        graph = part if graph is None else graph + part
    return graph.coalesce()
