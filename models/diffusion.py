"""Dual-channel cross-modal diffusion: each item's confounder estimate ẑ_i (docs/MODEL.md §2).

For every modality m a Gaussian diffusion on the projected content h_i^m (x0-prediction, a few
steps, small noise, as in DiffRec). The denoiser of modality m sees two channels: its own noisy
input x_s^m (with the step embedding) and the *other* modalities' representation c_i^m (their
mean, so any M >= 2 works). What a channel can be rebuilt from the others is the information the
modalities share, which the causal story attributes to the confounder Z. So the confounder
estimate is the fusion of the cross-modal reconstructions obtained with the own channel masked:

    ẑ_i = Fuse(x̂0^1, ..., x̂0^M),   x̂0^m = D_m(0, e(S+1), c_i^m)     (confounder_input: masked)

Fuse is their mean by default. ẑ does not enter the score (it only feeds the codebook), so a free
fusion MLP would be trained by nothing but the commitment loss, which it meets by collapsing every
item onto one point; the mean stays anchored by L_diff (`fusion: mlp` keeps the design's MLP).

and s_i^m = h_i^m - ẑ_i is the modality-specific remainder, kept orthogonal to ẑ_i by a penalty.
Training masks the own channel with probability `self_mask_prob` (a dedicated step index S+1
tells the denoiser the channel is absent), so D_m learns both denoising and pure cross-modal
prediction. The masked estimate is deterministic, so training and evaluation see the same ẑ.

Off (`enabled: false`): ẑ_i = Fuse(h_i^1, ..., h_i^M) (same fusion, no denoiser), so "without
diffusion" in an ablation differs from the full model only by the cross-modal denoising channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.projection import activation


def _doc(text: str, default: Any) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass
class DiffusionConfig:
    enabled: bool = _doc("Cross-modal diffusion on; off: the confounder estimate is a plain fusion of the "
                         "projections (`fusion`) and the diffusion/orthogonality losses are 0.", True)
    steps: int = _doc("Diffusion steps S.", 5)
    schedule: Literal["linear", "cosine"] = _doc(
        "Noise schedule of 1 - alpha_bar_s over s = 1..S: `linear` between noise_min and noise_max (DiffRec), "
        "or `cosine` (Nichol & Dhariwal); both multiplied by noise_scale.", "linear")
    noise_scale: float = _doc("Multiplier of the noise variance 1 - alpha_bar_s (DiffRec's noise_scale).", 0.1)
    noise_min: float = _doc("1 - alpha_bar_1 before noise_scale (linear schedule).", 1e-3)
    noise_max: float = _doc("1 - alpha_bar_S before noise_scale (linear schedule).", 2e-2)
    hidden: int = _doc("Hidden width of each modality's denoiser MLP.", 256)
    step_dim: int = _doc("Size of the sinusoidal step embedding fed to the denoisers.", 16)
    self_mask_prob: float = _doc("Training probability of masking a modality's own noisy input, so its "
                                 "denoiser must predict x0 from the other modalities alone.", 0.3)
    confounder_input: Literal["masked", "noisy"] = _doc(
        "How ẑ is read out: `masked` = every denoiser with its own channel masked (pure cross-modal "
        "prediction; needs self_mask_prob > 0), `noisy` = denoisers on the noise-free mean "
        "sqrt(alpha_bar) h at step `infer_step` (0 = clean input).", "masked")
    infer_step: int = _doc("Step s* of the `noisy` read-out (0..S).", 0)
    detach_target: bool = _doc("Stop the gradient of the x0 target, so the diffusion loss trains the denoisers "
                               "and cannot shrink the projections to make itself small.", True)
    fusion: Literal["mean", "mlp"] = _doc(
        "Fuse of the M reconstructions (projections when off) into ẑ: their `mean`, or an `mlp` of their "
        "concatenation (trained only by the commitment/orthogonality terms: prone to collapse).", "mean")
    fusion_hidden: int = _doc("Hidden width of the `mlp` fusion.", 256)
    activation: Literal["silu", "tanh", "leaky_relu", "gelu"] = _doc("Non-linearity of denoisers and fusion.", "silu")
    loss_items: int = _doc(
        "Items per training step in the denoising loss L_diff: a fresh uniform sample of this many items (the "
        "loss is a mean over items, so the sample gives an unbiased estimate of it at a fraction of the cost: "
        "the denoisers then run on the sample for the loss and on every item only for the read-out of ẑ); "
        "0 = every item.", 0)
    loss_weight: float = _doc("lambda_diff: weight of the diffusion loss in the total loss.", 0.1)
    ortho_weight: float = _doc("lambda_orth: weight of the orthogonality penalty between s^m and ẑ.", 0.01)


@dataclass
class DiffusionOutput:
    """What the diffusion module hands on (all rows aligned with the input rows)."""

    confounder: torch.Tensor           # ẑ [N, d]
    content: torch.Tensor              # x = mean_m h^m [N, d], the observed content
    specific: dict[str, torch.Tensor]  # s^m = h^m - ẑ [N, d] per modality
    loss: torch.Tensor                 # loss_weight * diff + ortho_weight * ortho (ready to add)
    terms: dict[str, torch.Tensor]     # unweighted "diff", "ortho" (for logging)


def alpha_bar_schedule(cfg: DiffusionConfig) -> torch.Tensor:
    """alpha_bar_s for s = 0..S (alpha_bar_0 = 1: step 0 is the clean input), float32 [S+1]."""
    s = cfg.steps
    if cfg.schedule == "linear":
        var = cfg.noise_scale * torch.linspace(cfg.noise_min, cfg.noise_max, s, dtype=torch.float64)
    else:
        t = torch.arange(s + 1, dtype=torch.float64) / s
        f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        var = cfg.noise_scale * (1 - f[1:] / f[0])
    var = var.clamp(1e-6, 0.999)
    return torch.cat([torch.ones(1, dtype=torch.float64), 1 - var]).float()


def step_embedding(steps: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps [...] -> [..., dim] (the transformer's positions)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=steps.device, dtype=torch.float32) / max(half, 1))
    angles = steps.float().unsqueeze(-1) * freqs
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return F.pad(emb, (0, dim - 2 * half))


def _mlp(inp: int, hidden: int, out: int, act: str) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), activation(act), nn.Linear(hidden, out))


class CrossModalDiffusion(nn.Module):
    """ẑ, s^m and L_diff from the projected modalities {m: h^m [N, d]} (M >= 2).

    Args:
        modalities: names, in the order of the fusion's concatenation.
        dim: d.
        cfg: `DiffusionConfig`.
    """

    def __init__(self, modalities: list[str], dim: int, cfg: DiffusionConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or DiffusionConfig()
        if len(modalities) < 2:
            raise ValueError(f"CrossModalDiffusion: needs >= 2 modalities, got {modalities}")
        if cfg.steps < 1 or not 0 <= cfg.infer_step <= cfg.steps:
            raise ValueError(f"CrossModalDiffusion: need steps >= 1 and 0 <= infer_step <= steps, got {cfg}")
        if cfg.enabled and cfg.confounder_input == "masked" and cfg.self_mask_prob <= 0:
            # The masked read-out would query the denoisers at a step they were never trained on.
            raise ValueError("CrossModalDiffusion: confounder_input 'masked' needs self_mask_prob > 0")
        self.cfg, self.dim, self.modalities = cfg, dim, list(modalities)
        m = len(self.modalities)
        # The same fusion in both states, so that on/off differ only by the denoising channel.
        self.fuse = _mlp(m * dim, cfg.fusion_hidden, dim, cfg.activation) if cfg.fusion == "mlp" else None
        if cfg.enabled:
            self.denoisers = nn.ModuleDict({
                name: _mlp(dim + cfg.step_dim + dim, cfg.hidden, dim, cfg.activation) for name in self.modalities})
            # Not trained, derived from the config: not worth a checkpoint entry.
            self.register_buffer("alpha_bar", alpha_bar_schedule(cfg), persistent=False)

    @property
    def mask_step(self) -> int:
        """The step index that marks "own channel masked" (one past the last noise step)."""
        return self.cfg.steps + 1

    def _denoise(self, x_s: torch.Tensor, steps: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x̂0 [M, N, d] from noisy inputs [M, N, d], steps [M, N] and conditions [M, N, d]."""
        emb = step_embedding(steps, self.cfg.step_dim)
        inp = torch.cat([x_s, emb, cond], dim=-1)
        return torch.stack([self.denoisers[name](inp[k]) for k, name in enumerate(self.modalities)])

    def _fusion(self, parts: torch.Tensor) -> torch.Tensor:
        """[M, N, d] -> [N, d]."""
        if self.fuse is None:
            return parts.mean(0)
        return self.fuse(parts.permute(1, 0, 2).reshape(parts.shape[1], -1))

    def diffusion_loss(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """sum_m mean_i ||x0 - x̂0||^2 / d on one random step (and self-mask) per item and modality."""
        m, n, _ = h.shape
        steps = torch.randint(1, self.cfg.steps + 1, (m, n), device=h.device)
        ab = self.alpha_bar[steps].unsqueeze(-1)
        x_s = ab.sqrt() * h + (1 - ab).sqrt() * torch.randn_like(h)
        if self.cfg.self_mask_prob > 0:
            masked = torch.rand((m, n), device=h.device) < self.cfg.self_mask_prob
            x_s = x_s.masked_fill(masked.unsqueeze(-1), 0.0)
            steps = torch.where(masked, torch.full_like(steps, self.mask_step), steps)
        x0_hat = self._denoise(x_s, steps, cond)
        target = h.detach() if self.cfg.detach_target else h
        return (x0_hat - target).square().mean(dim=(1, 2)).sum()

    def confounder(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Deterministic ẑ [N, d] from H [M, N, d] (no sampled noise: same in training and evaluation).

        Every item is read out at the same step, so the step embedding is one constant row: the
        denoiser's first layer W [x_s ; emb ; cond] + b is applied as W_c cond + (W_e emb + b)
        (+ W_x x_in for the `noisy` read-out; `masked` feeds x_in = 0). The same function as
        `_denoise` on the concatenation, without building the [M, N, 2d + step_dim] input and its
        gradient every step (docs/BENCHMARKS.md, "What dominates a step").
        """
        masked = self.cfg.confounder_input == "masked"
        step = self.mask_step if masked else self.cfg.infer_step
        emb = step_embedding(torch.tensor(step, device=h.device), self.cfg.step_dim)
        d, sd = self.dim, self.cfg.step_dim
        out = []
        for k, name in enumerate(self.modalities):
            first, act, last = self.denoisers[name]
            w = first.weight  # [hidden, d + step_dim + d]: columns of x_s, emb, cond (the order of `_denoise`)
            pre = F.linear(cond[k], w[:, d + sd:], w[:, d:d + sd] @ emb + first.bias)
            if not masked:
                pre = pre + F.linear(self.alpha_bar[step].sqrt() * h[k], w[:, :d])
            out.append(last(act(pre)))
        return self._fusion(torch.stack(out))

    def forward(self, h: dict[str, torch.Tensor], compute_loss: bool | None = None) -> DiffusionOutput:
        """Confounder estimate, remainders and (in training, or if `compute_loss`) the losses.

        `h` maps each modality to its projection [N, d] (any N: all items or a batch's items).
        """
        stacked = torch.stack([h[name] for name in self.modalities])  # [M, N, d]
        content = stacked.mean(0)
        zero = stacked.new_zeros(())
        if not self.cfg.enabled:
            z = self._fusion(stacked)
            return DiffusionOutput(z, content, {k: h[k] - z for k in self.modalities}, zero,
                                   {"diff": zero, "ortho": zero})
        m = stacked.shape[0]
        # Condition of modality m: the mean of the *other* modalities, for all m at once.
        cond = (stacked.sum(0, keepdim=True) - stacked) / (m - 1)
        z = self.confounder(stacked, cond)
        specific = stacked - z.unsqueeze(0)
        # cos^2 is scale-free: the penalty cannot be met by shrinking s^m or ẑ.
        # cos^2 = <s, z>^2 / max(|s|^2 |z|^2, eps^2), F.cosine_similarity's definition squared, from
        # three row sums (z broadcast, not expanded to [M, N, d]; the normalising divides were costly).
        dot = (specific * z).sum(-1)
        norms = specific.square().sum(-1) * z.square().sum(-1)
        ortho = (dot.square() / norms.clamp_min(1e-16)).mean()
        compute_loss = self.training if compute_loss is None else compute_loss
        if compute_loss and 0 < self.cfg.loss_items < stacked.shape[1]:
            sample = torch.randperm(stacked.shape[1], device=stacked.device)[:self.cfg.loss_items]
            diff = self.diffusion_loss(stacked.index_select(1, sample), cond.index_select(1, sample))
        else:
            diff = self.diffusion_loss(stacked, cond) if compute_loss else zero
        loss = self.cfg.loss_weight * diff + self.cfg.ortho_weight * ortho
        return DiffusionOutput(z, content, {k: specific[i] for i, k in enumerate(self.modalities)}, loss,
                               {"diff": diff.detach(), "ortho": ortho.detach()})
