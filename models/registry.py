"""Model name -> constructed module, so the trainer never branches on model names.

Adding a model (vbpr, freedom, causal, ...): add a `ModelName` member and a builder that takes
the ID tables plus the keyword arguments of `build_model` it needs; inputs a new model needs
(item features, kNN graphs) become new keyword arguments of `build_model` with defaults.
Every model returned has the same interface: `forward(users, pos, neg) -> {"loss", ...}`,
`propagate()` and `final_embeddings(uniform_exposure=False) -> (user_all, item_all)` (the ranking
under do(uniform exposure) where a model has an exposure term; the same embeddings otherwise).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Callable

import torch
from torch import nn

from data_loaders.graph import CSR
from models.bpr import BPRMF, Ranking, RegType
from models.causal import CausalConfig, CausalRec
from models.embeddings import IdTables, InitScheme
from models.freedom import Freedom, FreedomConfig
from models.lightgcn import LightGCN, LightGCNConfig
from models.vbpr import VBPR, VBPRConfig, concat_features


class ModelName(str, Enum):
    BPR = "bpr"
    LIGHTGCN = "lightgcn"
    VBPR = "vbpr"
    FREEDOM = "freedom"
    CAUSAL = "causal"


def _bpr(tables: IdTables, **args: Any) -> nn.Module:
    return BPRMF(tables, reg_weight=args["reg_weight"], reg_type=args["reg_type"], ranking=args["ranking"])


def _adjacency(args: dict[str, Any], norm_power: float) -> torch.Tensor | None:
    """The adjacency argument, built now if it was passed as a callable (lazy), with the model's own
    degree normalisation: `adjacency(norm_power=...)`, e.g. partial(graph.lightgcn_adjacency, train)."""
    adjacency = args["adjacency"]
    return adjacency(norm_power=norm_power) if callable(adjacency) else adjacency


def _lightgcn(tables: IdTables, **args: Any) -> nn.Module:
    cfg = args["options"] or LightGCNConfig()
    # Sampled mode never uses the full adjacency: not even built (at 1M users and items it is GBs).
    adjacency = _adjacency(args, cfg.norm_power) if cfg.graph_mode == "full" else None
    if cfg.graph_mode == "full" and adjacency is None:
        raise ValueError("build_model('lightgcn') needs the normalised adjacency")
    if cfg.graph_mode == "sampled" and args["train"] is None:
        raise ValueError("build_model('lightgcn') with graph_mode 'sampled' needs the training graph")
    return LightGCN(args["num_users"], args["num_items"], args["dim"], args["num_layers"], adjacency,
                    tables, reg_weight=args["reg_weight"], reg_type=args["reg_type"], cfg=cfg, train=args["train"],
                    seed=args["seed"], ranking=args["ranking"])


def _vbpr(tables: IdTables, **args: Any) -> nn.Module:
    cfg = args["options"] or VBPRConfig()
    return VBPR(tables, concat_features(args["features"] or {}, cfg.modalities), reg_weight=args["reg_weight"],
                reg_type=args["reg_type"], ranking=args["ranking"])


def _freedom(tables: IdTables, **args: Any) -> nn.Module:
    if args["train"] is None or not args["features"]:
        raise ValueError("build_model('freedom') needs the training graph and the item features")
    return Freedom(args["num_users"], args["num_items"], args["dim"], args["num_layers"], tables, args["features"],
                   args["train"], args["options"] or FreedomConfig(), args["seed"], reg_weight=args["reg_weight"],
                   reg_type=args["reg_type"], ranking=args["ranking"])


def _causal(tables: IdTables, **args: Any) -> nn.Module:
    cfg = args["options"] or CausalConfig()
    # Sampled mode, like sampled LightGCN, never builds the (U+I) x (U+I) adjacency.
    adjacency = _adjacency(args, cfg.backbone.norm_power) if cfg.backbone.graph_mode == "full" else None
    if args["train"] is None or not args["features"] or (adjacency is None and cfg.backbone.graph_mode == "full"):
        raise ValueError("build_model('causal') needs the training graph, its adjacency and the item features")
    return CausalRec(tables, num_layers=args["num_layers"], adjacency=adjacency, features=args["features"],
                     train=args["train"], reg_weight=args["reg_weight"], reg_type=args["reg_type"], cfg=cfg,
                     seed=args["seed"], ranking=args["ranking"])


_BUILDERS: dict[ModelName, Callable[..., nn.Module]] = {
    ModelName.BPR: _bpr,
    ModelName.LIGHTGCN: _lightgcn,
    ModelName.VBPR: _vbpr,
    ModelName.FREEDOM: _freedom,
    ModelName.CAUSAL: _causal,
}
# VBPR's user vector scores an item's [ID part ; content part], twice the item table's width.
_USER_DIM_FACTOR: dict[ModelName, int] = {ModelName.VBPR: 2}


def build_model(name: ModelName | str, *, num_users: int, num_items: int,
                adjacency: torch.Tensor | Callable[..., torch.Tensor] | None,
                dim: int, num_layers: int, reg_weight: float, init: InitScheme | str = InitScheme.XAVIER,
                init_std: float = 0.1, reg_type: RegType | str = RegType.MMREC,
                device: torch.device | str, features: dict[str, torch.Tensor] | None = None,
                train: CSR | None = None, seed: int = 0, options: Any = None,
                ranking: Ranking = Ranking()) -> nn.Module:
    """Build model `name` with freshly initialised ID tables on `device` (unsharded).

    Seed torch's RNG identically on every rank first; `trainer.sharding.shard_model` then
    broadcasts rank 0's tables anyway, so all ranks and plans start from the same weights.
    `features` are the item content features per modality (row i = item i), `train` the
    training graph, `seed` the run's seed (for per-epoch randomness identical on all ranks),
    `options` the model's own typed config section (e.g. `FreedomConfig`, `LightGCNConfig`), or None.
    `adjacency` (the normalised user-item adjacency) may be a callable `adjacency(norm_power=r)`,
    e.g. `partial(data_loaders.graph.lightgcn_adjacency, train)`: it is then built only for a model
    that uses it (full-graph LightGCN, the causal model), with that model's `norm_power`. `ranking` is the
    ranking term of every model's loss (BPR, or a sampled softmax: `models.bpr`).
    """
    try:
        key = ModelName(name)
    except ValueError:
        raise ValueError(f"unknown model {name!r}; known: {[m.value for m in ModelName]}") from None
    tables = IdTables(num_users, num_items, dim, init=init, init_std=init_std, device=device,
                      user_dim=dim * _USER_DIM_FACTOR.get(key, 1))
    return _BUILDERS[key](tables, num_users=num_users, num_items=num_items, adjacency=adjacency, dim=dim,
                          num_layers=num_layers, reg_weight=reg_weight, reg_type=reg_type, features=features,
                          train=train, seed=seed, options=options, ranking=ranking)
