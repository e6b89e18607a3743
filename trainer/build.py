"""The one place that turns a `Config` into its (unsharded) model.

Training (trainer/loop.py, before sharding), restoring a finished run (trainer/restore.py) and
the step profiler (benchmarks/profile_step.py) all build the model here, so the three cannot
drift apart: a checkpoint only loads into the model the config builds, and a benchmark only
measures what training runs, if they pass `build_model` the same inputs. What differs between
them (where the dataset comes from, which splits are read and how, the device, sharding) stays
with the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch
from torch import nn

from data_loaders.format import Split
from data_loaders.graph import CSR, lightgcn_adjacency
from data_loaders.stream import Dataset
from models.bpr import Ranking
from models.registry import build_model
from trainer.config import Config


def build_from_config(cfg: Config, dataset: Dataset, splits: Mapping[Split, CSR],
                      device: torch.device | str = "cpu") -> nn.Module:
    """The unsharded model of `cfg` on `device`, from `dataset`'s item features and `splits[Split.TRAIN]`.

    Seeds torch's RNG with `cfg.run.seed` first: identical initial tables on every rank before
    sharding, and anything a checkpoint does not overwrite stays reproducible.
    """
    train = splits[Split.TRAIN]
    features = {m: torch.from_numpy(dataset.load_item_features(m)) for m in sorted(dataset.manifest.modalities)}
    torch.manual_seed(cfg.run.seed)
    return build_model(cfg.model.name, num_users=train.num_rows, num_items=train.num_cols,
                       # built only by models that use it, with their own norm_power
                       adjacency=partial(lightgcn_adjacency, train),
                       dim=cfg.model.embedding_dim,
                       num_layers=cfg.model.num_layers, reg_weight=cfg.model.reg_weight,
                       init=cfg.model.init, init_std=cfg.model.init_std, device=device,
                       features=features, train=train, seed=cfg.run.seed,
                       # the model's own typed section, e.g. cfg.model.freedom (None for bpr/lightgcn)
                       options=getattr(cfg.model, cfg.model.name, None),
                       ranking=Ranking(cfg.model.loss, cfg.model.softmax_temperature))
