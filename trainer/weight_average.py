"""An exponential moving average of the trained weights, which evaluation can rank with.

Why: the causal model's valid curve jumps from one evaluation to the next and its best epoch (and
so its test figure) varies far more from seed to seed than LightGCN's (docs/RESULTS.md, "TikTok:
what makes the valid curve jump", "TikTok: the configuration and LightGCN on fourteen more
seeds"). An average of the weights over the last ~1/(1 - decay) steps (Polyak averaging) smooths
that step-to-step noise without changing what training does: the optimizers keep stepping the
live weights; only evaluation and the epoch it selects see the average.

What is averaged: every parameter this rank holds as `model.named_parameters()` yields it, i.e.
TorchRec's local table shards (views into FBGEMM's weights, whatever the sharding and kernel) and
the dense parameters. Buffers (the codebook, its prior, the reconstructed subgraph) and a codebook
held as a TorchRec table are left as training set them: they are running statistics or
structure, not weights an optimizer moves.
Each rank averages its own shards, so nothing is communicated.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from models.codebook_table import is_code_table_parameter


class WeightAverage:
    """shadow <- decay * shadow + (1 - decay) * live after every optimizer step.

    The first `1 / (1 - decay)` steps would be dominated by the initial weights; as in
    TensorFlow's ExponentialMovingAverage(num_updates=...), the decay used at update t is
    min(decay, (1 + t) / (10 + t)), so early averages follow the weights closely.
    """

    def __init__(self, model: torch.nn.Module, decay: float,
                 skip: Callable[[str], bool] = is_code_table_parameter) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight average: decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.updates = 0
        # Views of the live weights, taken once: FBGEMM's table weights and the dense parameters are
        # allocated when the model is sharded / the engine is built and never reallocated after.
        # `skip`: parameters that are running statistics, not optimizer-stepped weights (the
        # codebook when `backdoor.store: table`); empty ones are tables held by other ranks
        # (TorchRec names them on every rank).
        self._live = {name: p for name, p in model.named_parameters() if not skip(name) and p.numel() > 0}
        self.shadow = {name: p.detach().clone() for name, p in self._live.items()}

    @torch.no_grad()
    def reset(self) -> None:
        """Start the average again from the live weights (e.g. resuming a run that had none)."""
        for name, live in self._live.items():
            self.shadow[name].copy_(live)
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 - self.current_decay()
        for name, live in self._live.items():
            self.shadow[name].lerp_(live.detach(), weight)
        self.updates += 1

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights; the live ones come back after."""
        with torch.no_grad():
            backup = {name: live.detach().clone() for name, live in self._live.items()}
            for name, live in self._live.items():
                live.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, live in self._live.items():
                    live.copy_(backup[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates,
                "shadow": {name: t.detach().cpu().clone() for name, t in self.shadow.items()}}

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        if set(state["shadow"]) != set(self.shadow):
            raise ValueError(f"{source}: weight average holds {sorted(state['shadow'])[:5]}, this model "
                             f"{sorted(self.shadow)[:5]}")
        for name, tensor in state["shadow"].items():
            if tensor.shape != self.shadow[name].shape:
                raise ValueError(f"{source}: weight average '{name}' shape {tuple(tensor.shape)} saved, "
                                 f"{tuple(self.shadow[name].shape)} live")
            self.shadow[name].copy_(tensor)
        self.updates = int(state["updates"])
