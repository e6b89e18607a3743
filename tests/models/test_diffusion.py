"""Cross-modal diffusion: schedule, shapes, cross-modal read-out, detached target, off switch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.diffusion import CrossModalDiffusion, DiffusionConfig, alpha_bar_schedule

D, N = 8, 10


def _inputs(m: int, requires_grad: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {f"m{k}": torch.randn(N, D, generator=g).requires_grad_(requires_grad) for k in range(m)}


def test_schedules() -> None:
    cfg = DiffusionConfig(steps=4, noise_scale=0.5, noise_min=0.01, noise_max=0.04)
    ab = alpha_bar_schedule(cfg)
    assert ab.shape == (5,) and ab[0] == 1
    torch.testing.assert_close(ab[1:], 1 - 0.5 * torch.linspace(0.01, 0.04, 4))
    cos = alpha_bar_schedule(DiffusionConfig(steps=6, schedule="cosine", noise_scale=0.3))
    assert cos[0] == 1 and bool((cos[1:] < cos[:-1]).all()) and cos[-1] >= 0.7 - 1e-6


@pytest.mark.parametrize("m", [2, 3])
def test_shapes_and_losses(m: int) -> None:
    torch.manual_seed(0)
    diff = CrossModalDiffusion([f"m{k}" for k in range(m)], D).train()
    h = _inputs(m)
    out = diff(h)
    assert out.confounder.shape == (N, D) and out.content.shape == (N, D)
    assert list(out.specific) == list(h)
    torch.testing.assert_close(out.content, torch.stack(list(h.values())).mean(0))
    torch.testing.assert_close(out.specific["m1"], h["m1"] - out.confounder)
    assert out.terms["diff"] > 0 and out.terms["ortho"] >= 0
    cfg = diff.cfg
    torch.testing.assert_close(out.loss, cfg.loss_weight * out.terms["diff"] + cfg.ortho_weight * out.terms["ortho"])


class _FirstBlock(nn.Module):
    """Fusion replaced by "the reconstruction of modality 0" to inspect one denoiser's inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :D]


@pytest.mark.parametrize("m", [2, 3])
def test_masked_readout_is_purely_cross_modal(m: int) -> None:
    torch.manual_seed(0)
    diff = CrossModalDiffusion([f"m{k}" for k in range(m)], D, DiffusionConfig(fusion="mlp"))
    diff.fuse = _FirstBlock()
    h = _inputs(m, requires_grad=True)
    diff(h).confounder.sum().backward()
    assert h["m0"].grad is None or h["m0"].grad.abs().sum() == 0  # own channel masked
    for k in range(1, m):
        assert h[f"m{k}"].grad.abs().sum() > 0  # the condition: mean of the other modalities


def test_gradients_reach_denoisers_fusion_and_projections() -> None:
    torch.manual_seed(0)
    diff = CrossModalDiffusion(["a", "b"], D, DiffusionConfig(fusion="mlp")).train()
    h = {k: v.requires_grad_() for k, v in zip("ab", _inputs(2).values())}
    out = diff(h)
    (out.loss + out.confounder.sum()).backward()
    for name, p in diff.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(v.grad.abs().sum() > 0 for v in h.values())


@pytest.mark.parametrize("detach", [True, False])
def test_target_is_detached(detach: bool) -> None:
    """All inputs masked and the condition detached: only the target path can reach h."""
    torch.manual_seed(0)
    diff = CrossModalDiffusion(["a", "b"], D, DiffusionConfig(self_mask_prob=1.0, detach_target=detach))
    h = torch.randn(2, N, D, requires_grad=True)
    diff.diffusion_loss(h, h.detach().flip(0)).backward()
    reached = h.grad is not None and bool(h.grad.abs().sum() > 0)
    assert reached is (not detach)


def test_readout_deterministic_and_no_loss_in_eval() -> None:
    torch.manual_seed(0)
    for cfg in (DiffusionConfig(), DiffusionConfig(confounder_input="noisy", infer_step=2)):
        diff = CrossModalDiffusion(["m0", "m1"], D, cfg).eval()
        h = _inputs(2)
        a, b = diff(h), diff(h)
        torch.testing.assert_close(a.confounder, b.confounder)
        assert a.terms["diff"] == 0


def test_off_switch() -> None:
    h = _inputs(3, requires_grad=True)
    mean_off = CrossModalDiffusion(["m0", "m1", "m2"], D, DiffusionConfig(enabled=False)).train()
    out = mean_off(h)
    assert len(list(mean_off.parameters())) == 0
    torch.testing.assert_close(out.confounder, torch.stack(list(h.values())).mean(0))
    assert out.loss == 0 and not out.loss.requires_grad
    mlp_off = CrossModalDiffusion(["m0", "m1", "m2"], D, DiffusionConfig(enabled=False, fusion="mlp")).train()
    assert {n.split(".")[0] for n, _ in mlp_off.named_parameters()} == {"fuse"}
    out = mlp_off(h)
    assert out.confounder.shape == (N, D) and out.loss == 0


def test_config_validation() -> None:
    with pytest.raises(ValueError, match=">= 2 modalities"):
        CrossModalDiffusion(["a"], D)
    with pytest.raises(ValueError, match="self_mask_prob"):
        CrossModalDiffusion(["a", "b"], D, DiffusionConfig(self_mask_prob=0.0))
    CrossModalDiffusion(["a", "b"], D, DiffusionConfig(self_mask_prob=0.0, confounder_input="noisy"))


def test_loss_items_samples_the_denoising_loss_and_keeps_the_read_out_whole() -> None:
    torch.manual_seed(0)
    full = CrossModalDiffusion(["m0", "m1"], D, DiffusionConfig(loss_items=0)).train()
    part = CrossModalDiffusion(["m0", "m1"], D, DiffusionConfig(loss_items=4)).train()
    part.load_state_dict(full.state_dict())
    seen: list[int] = []
    original = part.diffusion_loss
    part.diffusion_loss = lambda h, cond: seen.append(h.shape[1]) or original(h, cond)  # type: ignore[method-assign]
    h = _inputs(2)
    out_full, out_part = full(h), part(h)
    assert seen == [4]  # the loss saw a sample of 4 of the N items
    torch.testing.assert_close(out_part.confounder, out_full.confounder)  # ẑ of every item, unchanged
    # The sampled loss estimates the full one: averaged over many draws it matches it.
    torch.manual_seed(1)
    draws = torch.stack([part(h).terms["diff"] for _ in range(400)]).mean()
    full_mean = torch.stack([full(h).terms["diff"] for _ in range(400)]).mean()
    assert abs(float(draws) / float(full_mean) - 1) < 0.1
    assert CrossModalDiffusion(["m0", "m1"], D, DiffusionConfig(loss_items=N + 5)).train()(h).terms["diff"] > 0


@pytest.mark.parametrize("readout", [{"confounder_input": "masked"}, {"confounder_input": "noisy", "infer_step": 2}])
def test_split_first_layer_readout_equals_the_denoisers_on_the_concatenated_input(readout: dict) -> None:
    torch.manual_seed(0)
    diff = CrossModalDiffusion(["m0", "m1", "m2"], D, DiffusionConfig(**readout)).eval()
    h = torch.stack(list(_inputs(3).values()))
    cond = (h.sum(0, keepdim=True) - h) / 2
    if readout["confounder_input"] == "masked":
        steps, x_in = torch.full((3, N), diff.mask_step), torch.zeros_like(h)
    else:
        steps, x_in = torch.full((3, N), 2), diff.alpha_bar[2].sqrt() * h
    want = diff._fusion(diff._denoise(x_in, steps, cond))
    torch.testing.assert_close(diff.confounder(h, cond), want)


def test_orthogonality_term_is_the_mean_squared_cosine_of_remainders_and_confounder() -> None:
    torch.manual_seed(0)
    diff = CrossModalDiffusion(["m0", "m1"], D).eval()
    out = diff(_inputs(2))
    z = out.confounder
    want = torch.stack([torch.nn.functional.cosine_similarity(out.specific[m], z, dim=-1) for m in ("m0", "m1")])
    torch.testing.assert_close(out.terms["ortho"], want.square().mean())
