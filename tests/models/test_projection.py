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


@pytest.mark.parametrize("cfg", [ProjectionConfig(), ProjectionConfig(hidden=0), ProjectionConfig(input_norm="none")])
def test_normalized_inputs_give_the_same_outputs_and_gradients(cfg: ProjectionConfig) -> None:
    # The LayerNorm's affine folded into the first Linear: the same function of the same parameters.
    torch.manual_seed(0)
    proj = ModalityProjection(DIMS, 8, cfg)
    for p in proj.parameters():  # away from the identity init, so γ and β matter
        p.data.add_(0.3 * torch.randn_like(p))
    feats = _features(9)
    grads = []
    for out in (proj(feats), proj(proj.normalize(feats), normalized=True)):
        proj.zero_grad()
        sum((v * torch.linspace(-1, 1, 8)).sum() for v in out.values()).backward()
        grads.append({n: p.grad.clone() for n, p in proj.named_parameters()})
        if len(grads) == 1:
            expected = out
    for m in DIMS:
        torch.testing.assert_close(out[m], expected[m], atol=1e-5, rtol=1e-5)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)
