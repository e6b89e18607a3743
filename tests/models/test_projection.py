"""Modality projections: shapes for any number of modalities, gradients, key checks."""

from __future__ import annotations

import pytest
import torch

from models.projection import ModalityProjection, ProjectionConfig

DIMS = {"image": 12, "text": 7, "audio": 5}


def _features(n: int = 6) -> dict[str, torch.Tensor]:
    return {m: torch.randn(n, f) for m, f in DIMS.items()}


@pytest.mark.parametrize("cfg", [ProjectionConfig(), ProjectionConfig(hidden=0, input_norm="none"),
                                 ProjectionConfig(activation="tanh", dropout=0.1)])
def test_shapes_and_order(cfg: ProjectionConfig) -> None:
    torch.manual_seed(0)
    proj = ModalityProjection(DIMS, 8, cfg)
    out = proj(_features())
    assert list(out) == list(DIMS)
    assert all(v.shape == (6, 8) and v.dtype == torch.float32 for v in out.values())


def test_every_mlp_learns() -> None:
    torch.manual_seed(0)
    proj = ModalityProjection(DIMS, 8)
    sum(v.square().sum() for v in proj(_features()).values()).backward()
    for name, p in proj.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_rejects_wrong_modalities() -> None:
    proj = ModalityProjection(DIMS, 8)
    feats = _features()
    del feats["audio"]
    with pytest.raises(ValueError, match="modalities"):
        proj(feats)
    with pytest.raises(ValueError):
        ModalityProjection({}, 8)
