"""The embeddings every ranking is made from: the model's, plus an optional popularity offset.

    score_ui = <h_u, h_i> + beta * log(1 + n_i)      beta = eval.popularity_offset, n_i = item i's
                                                     training interactions

Why an offset at ranking time: a model trained on observed interactions learns how popular each
item is (with uniform negatives, popularity is the easiest way to tell a positive from a
negative), and how much of that the ranking should keep is a separate choice; beta < 0 ranks
popular items lower, beta > 0 higher, 0 is the model's own score. PDA (Zhang et al., "Causal
Intervention for Leveraging Popularity Bias in Recommendation", SIGIR 2021) makes the same split
between what training absorbs and what inference keeps. beta is a hyperparameter like any other:
chosen on valid (`python -m trainer.popularity_offset` sweeps it at finished runs' best checkpoints).

It is carried as one more embedding column (users: beta, items: log(1 + n_i)), so the evaluator,
the top-K of `trainer.explain` and every report tool rank with exactly the same scores.
"""

from __future__ import annotations

import numpy as np
import torch

from data_loaders.graph import CSR


def popularity_column(train: CSR) -> torch.Tensor:
    """log(1 + n_i) per item [I] (float64), n_i = the item's interactions in `train` (users x items)."""
    return torch.from_numpy(np.log1p(np.bincount(train.indices, minlength=train.num_cols).astype(np.float64)))


def with_popularity_offset(user_emb: torch.Tensor, item_emb: torch.Tensor, popularity: torch.Tensor,
                           beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(user_emb, item_emb) unchanged for beta = 0; else with the column (beta, log(1 + n_i)) appended."""
    if beta == 0:
        return user_emb, item_emb
    if popularity.shape != (item_emb.shape[0],):
        raise ValueError(f"popularity has shape {tuple(popularity.shape)}, expected ({item_emb.shape[0]},) (one per item)")
    user_col = torch.full((user_emb.shape[0], 1), float(beta), dtype=user_emb.dtype, device=user_emb.device)
    item_col = popularity.to(dtype=item_emb.dtype, device=item_emb.device)[:, None]
    return torch.cat([user_emb, user_col], dim=1), torch.cat([item_emb, item_col], dim=1)


@torch.no_grad()
def ranking_embeddings(model: torch.nn.Module, train: CSR, beta: float,
                       uniform_exposure: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's final embeddings with the popularity offset `beta` (eval.popularity_offset) applied."""
    user_emb, item_emb = model.final_embeddings(uniform_exposure=uniform_exposure)
    return with_popularity_offset(user_emb, item_emb, popularity_column(train), beta)
