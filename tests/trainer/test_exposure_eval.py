"""The evaluator ranks the unbiased splits under do(uniform exposure) and the observational splits with it."""

from __future__ import annotations

import numpy as np
import torch

from data_loaders.format import Split
from data_loaders.graph import CSR
from trainer.config import load_config
from trainer.loop import Evaluator


def test_unbiased_splits_use_the_interventional_embeddings() -> None:
    rng = np.random.default_rng(0)
    users, items = 50, 40

    def split(n: int) -> CSR:
        keys = rng.choice(users * items, size=n, replace=False)
        return CSR.from_pairs(keys // items, keys % items, users, items)

    splits = {Split.TRAIN: split(300), Split.VALID: split(60), Split.TEST: split(60), Split.UNBIASED_TEST: split(60),
              Split.UNBIASED_VALID: split(60)}
    g = torch.Generator().manual_seed(0)
    observational = (torch.randn(users, 8, generator=g), torch.randn(items, 8, generator=g))
    interventional = (torch.randn(users, 8, generator=g), torch.randn(items, 8, generator=g))
    calls: list[bool] = []

    class Model:
        def final_embeddings(self, uniform_exposure: bool = False):
            calls.append(uniform_exposure)
            return interventional if uniform_exposure else observational

    evaluator = Evaluator(load_config(None, []), splits, rank=0, world_size=1)
    assert evaluator(Model(), Split.VALID) != evaluator(Model(), Split.UNBIASED_TEST)
    assert calls == [False, True]
    evaluator(Model(), Split.UNBIASED_VALID)
    assert calls[-1] is True
