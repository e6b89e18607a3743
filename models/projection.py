"""Per-modality projections of raw item features into the shared embedding space d.

h_i^m = MLP_m(norm(f_i^m)) for every content modality m (any number of them). Raw features come
from unrelated encoders (a 4096-d CNN, a 384-d sentence model, 128-d audio) with very different
scales, so each modality gets its own input normalisation and its own MLP; everything
downstream (diffusion, back-door, front-door) then works in d dimensions only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn


def _doc(text: str, default: Any) -> Any:
    """A dataclass field carrying its documentation (the trainer surfaces it as a config key)."""
    return field(default=default, metadata={"doc": text})


@dataclass
class ProjectionConfig:
    hidden: int = _doc("Hidden width of each modality's projection MLP; 0 = a single linear layer.", 256)
    dropout: float = _doc("Dropout inside the projection MLPs (0 keeps every rank's item representation "
                          "identical, which the codebook statistics assume; see backdoor.allreduce_stats). On "
                          "TikTok, 0.1 / 0.3 lowered best valid Recall@20 by 0.0008 / 0.0023 over seeds 16-21 "
                          "(docs/RESULTS.md, \"TikTok: dropout in the projections\").", 0.0)
    input_norm: Literal["layernorm", "none"] = _doc(
        "Normalisation of raw features before projecting: `layernorm` (learned affine; equalises the "
        "scales of unrelated feature extractors) or `none`.", "layernorm")
    activation: Literal["leaky_relu", "tanh", "gelu"] = _doc("Non-linearity of the projection MLPs.", "leaky_relu")


def activation(name: str) -> nn.Module:
    """The activation module named by a config value."""
    return {"leaky_relu": nn.LeakyReLU(), "tanh": nn.Tanh(), "gelu": nn.GELU(), "silu": nn.SiLU()}[name]


class ModalityProjection(nn.Module):
    """One MLP per modality, f_i^m [N, f_m] -> h_i^m [N, d].

    Args:
        modality_dims: modality name -> raw feature size f_m (the manifest's `modalities`); the
            order given is the order of every output dict.
        dim: the shared embedding size d.
        cfg: `ProjectionConfig`.
    """

    def __init__(self, modality_dims: dict[str, int], dim: int, cfg: ProjectionConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ProjectionConfig()
        if not modality_dims:
            raise ValueError("ModalityProjection: at least one modality is required")
        if dim <= 0 or any(f <= 0 for f in modality_dims.values()):
            raise ValueError(f"ModalityProjection: sizes must be positive, got {modality_dims=}, {dim=}")
        self.cfg, self.dim = cfg, dim
        self.modalities = list(modality_dims)
        self.mlps = nn.ModuleDict()
        for name, f_m in modality_dims.items():
            layers: list[nn.Module] = [nn.LayerNorm(f_m)] if cfg.input_norm == "layernorm" else []
            if cfg.hidden > 0:
                layers += [nn.Linear(f_m, cfg.hidden), activation(cfg.activation), nn.Dropout(cfg.dropout),
                           nn.Linear(cfg.hidden, dim)]
            else:
                layers += [nn.Linear(f_m, dim)]
            self.mlps[name] = nn.Sequential(*layers)

    def normalize(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The parameter-free part of the input normalisation: LayerNorm without its affine (or nothing).

        Item features never change, so a caller that projects the same rows every step computes
        this once and passes `normalized=True` to `forward`: the LayerNorm's affine (γ, β) is then
        folded into the first Linear, W (γ ⊙ n + β) + b = (W diag γ) n + (W β + b), which is the
        same function and the same gradients without normalising [N, f_m] and back-propagating
        into it at every step (docs/BENCHMARKS.md, "What dominates a step").
        """
        if self.cfg.input_norm != "layernorm":
            return dict(features)
        return {m: F.layer_norm(f, (f.shape[-1],), eps=self.mlps[m][0].eps) for m, f in features.items()}

    def _folded(self, name: str, normalized: torch.Tensor) -> torch.Tensor:
        """MLP_m on `normalize`d rows, the LayerNorm's affine folded into the first Linear."""
        mlp = self.mlps[name]
        if self.cfg.input_norm != "layernorm":
            return mlp(normalized)
        norm, first = mlp[0], mlp[1]
        weight = first.weight * norm.weight  # W diag(γ): γ scales W's input columns
        bias = torch.addmv(first.bias, first.weight, norm.bias)  # W β + b
        return mlp[2:](F.linear(normalized, weight, bias))

    def forward(self, features: dict[str, torch.Tensor], normalized: bool = False) -> dict[str, torch.Tensor]:
        """{m: h^m [N, d]} for {m: f^m [N, f_m]} (same N for every modality, same keys as built).

        `normalized`: the rows are `normalize(f^m)` rather than raw features (the same output).
        """
        if set(features) != set(self.modalities):
            raise ValueError(f"ModalityProjection: got modalities {sorted(features)}, built for {self.modalities}")
        if normalized:
            return {m: self._folded(m, features[m]) for m in self.modalities}
        return {m: self.mlps[m](features[m]) for m in self.modalities}
