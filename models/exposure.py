"""Exposure term: the interaction bias's direct path, trained and then intervened away (docs/MODEL.md §4b).

The design's interaction bias is a hidden exposure context C that decides which edges are observed
(a popular or promoted item is shown more, so it is clicked more, whatever the user's taste). The
ranking loss sees only observed edges, so without help the ID rows learn exposure and preference
together. This term gives exposure a path of its own while training,

    ŷ_ui^train = ⟨h_u, h_i⟩ + b_i,

and ranking uses ⟨h_u, h_i⟩ alone: the prediction under do(C = uniform exposure), the same
"train with the confounder, intervene at inference" step as PD (Zhang et al., SIGIR 2021,
"Causal Intervention for Leveraging Popularity Bias in Recommendation"). Two estimates of b_i:

* ``item_bias``: a learned scalar per item (init 0), so exposure is whatever the ranking loss
  attributes to the item beyond the user's taste;
* ``degree``: b_i = gamma · log(1 + deg_i), the item's training degree as the exposure proxy (PD's
  form in log space), fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn


@dataclass
class ExposureConfig:
    mode: Literal["none", "item_bias", "degree"] = field(default="none", metadata={"doc": (
        "How the training score models exposure: none; item_bias (a learned per-item scalar b_i); degree "
        "(b_i = gamma·log(1 + training degree)). The term is dropped when ranking (do(uniform exposure)).")})
    gamma: float = field(default=1.0, metadata={"doc": "Weight of log(1 + degree) with mode: degree."})


class ExposureTerm(nn.Module):
    """b_i for the training score; zero (and no parameters) with mode none."""

    def __init__(self, item_degree: torch.Tensor, cfg: ExposureConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ExposureConfig()
        if self.cfg.mode == "item_bias":
            self.bias = nn.Parameter(torch.zeros(item_degree.numel()))
        elif self.cfg.mode == "degree":
            # Data, rebuilt from the training graph: not checkpointed.
            self.register_buffer("bias", self.cfg.gamma * torch.log1p(item_degree.float()), persistent=False)
        elif self.cfg.mode != "none":
            raise ValueError(f"exposure.mode must be none, item_bias or degree, got {self.cfg.mode!r}")

    @property
    def enabled(self) -> bool:
        return self.cfg.mode != "none"

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """b_i for ``items`` (zeros with mode none)."""
        if not self.enabled:
            return torch.zeros(items.shape, device=items.device)
        return self.bias[items]
