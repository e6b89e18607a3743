"""Back-door adjustment over a discretised confounder: a (two-level) VQ codebook (docs/MODEL.md §3).

The confounder estimate ẑ_i (models/diffusion.py) is vector-quantised, coarse level first and the
fine level on the residual the coarse code leaves (residual VQ):

    k1(i) = argmin_k ||ẑ_i - C1_k||,   r_i = ẑ_i - C1_k1(i),   k2(i) = argmin_k ||r_i - C2_k||.

Codes learn by EMA k-means (no gradient), the encoder by the commitment loss
beta * (||ẑ - sg(C1_k1)||^2 + ||r - sg(C2_k2)||^2); the quantised ẑ_q passes gradients straight
through to ẑ. Each level has a prior P(c) (assignment counts over all items, or the EMA counts).
The adjustment replaces "the item's own confounder" by the expectation over *all* codes under the
prior, which is what turns P(Y | X) into P(Y | do(X)) = sum_z P(Y | X, z) P(z):

    x_i^bd = x_i + sum_levels  sum_k P(c_k) a_ik W_v c_k / sum_k P(c_k) a_ik,
    a_ik = exp(<W_q x_i, W_k c_k> / (tau sqrt(d))).

One level's quantiser, its EMA codes, restarts and re-fits are `models/vq.py`; this module holds
the config, stacks the levels and forms the adjustment. Code vectors live in a TorchRec table
sharded like the ID tables (`store: table`, models/codebook_table.py) or in a plain replicated
buffer (`store: buffer`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from torch import nn

from models.vq import BufferCodebookStore, CodebookStore, VectorQuantizer, all_reduce_sum


def _doc(text: str, default: Any) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass
class BackdoorConfig:
    enabled: bool = _doc("Back-door adjustment on; off: x^bd = x, no codebook, VQ loss 0.", True)
    hierarchical: bool = _doc("Two-level codebook (coarse codes on ẑ, fine codes on the residual); "
                              "false: one flat level of `coarse_codes` codes.", True)
    coarse_codes: int = _doc("K1: coarse (category-like) codes; the only level when not hierarchical.", 32)
    fine_codes: int = _doc("K2: fine (style-like) codes quantising the coarse residual.", 128)
    beta: float = _doc("Commitment weight beta in beta * ||ẑ - sg(z_q)||^2.", 0.25)
    ema_decay: float = _doc("Codebook EMA decay gamma (counts and sums).", 0.95)
    ema_epsilon: float = _doc("Laplace smoothing of the EMA counts (keeps a code with no members finite).", 1e-5)
    dead_code_threshold: float = _doc("A code whose EMA count falls below this fraction of the mean EMA count (its "
                                      "uniform share) is restarted from a random current encoder output; relative, so "
                                      "independent of how many items a step quantises. 0 disables restarts.", 0.1)
    restart_epochs: int = _doc("Dead-code restarts only in the first this many epochs, 0 = in every epoch: codes "
                               "spread over the items while the encoder moves fast, then stay put (a restart "
                               "late in training moves what the adjustment reads and makes the valid curve jump).",
                               0)
    data_init: bool = _doc("Initialise the codes from random encoder outputs at the first training step.", True)
    refit_every: int = _doc("Re-fit every level's codes by k-means on all items' current ẑ (the fine level on the "
                            "residuals of the re-fitted coarse codes) at the start of epoch `refit_start` and every "
                            "this many epochs after it; 0 = never. Why: the codes start at step 1's encoder outputs and "
                            "ẑ then drifts away from them, so without restarts the nearest code takes every item and "
                            "the others are stranded (docs/RESULTS.md \"TikTok: the coarse codebook without "
                            "restarts\"); a re-fit puts the codes where the items are now. The adjustment sums over "
                            "all codes, so a re-fit's relabelling of codes does not change it.", 0)
    refit_start: int = _doc("Epoch (0-based) of the first k-means re-fit, with refit_every > 0.", 10)
    refit_iters: int = _doc("Lloyd iterations per k-means re-fit (each one assignment of all items, chunked).", 10)
    prior: Literal["counts", "ema"] = _doc("P(c): `counts` = assignment counts over all items (refresh_prior, "
                                           "once per epoch; uniform before the first), `ema` = EMA counts.", "counts")
    prior_smoothing: float = _doc("Additive smoothing alpha of the count prior: (n_k + alpha) / (n + K alpha).", 1.0)
    temperature: float = _doc("Attention temperature tau of a_ik.", 1.0)
    loss_weight: float = _doc("lambda_vq: weight of the commitment loss in the total loss.", 1.0)
    allreduce_stats: bool = _doc("Sum the EMA statistics over data-parallel ranks before applying them: on when "
                                 "each rank quantises different items, off when every rank quantises all items.", False)
    chunk_size: int = _doc("Items per chunk in refresh_prior / assign (memory ~ chunk x K floats).", 65536)
    center: bool = _doc("Quantise ẑ - m instead of ẑ, m a running mean of ẑ (the first training step's mean, then an "
                         "EMA at `center_decay`; no gradient); the codes the adjustment and the front-door read are "
                         "m + C1_k. Why: on TikTok ẑ is a large shared vector plus small per-item deviations, "
                         "so the code nearest the shared vector takes every item and the coarse level adds a "
                         "constant; there this lagging mean left that unchanged (docs/RESULTS.md \"TikTok: a "
                         "centred codebook\").",
                         False)
    center_decay: float = _doc("EMA decay of `center`'s running mean m, per training step; 0 = the current step's "
                               "mean of ẑ (every item's, in full-graph mode), which evaluation then uses. Why a key "
                               "of its own: at 0.99 m lagged the moving ẑ on TikTok (docs/RESULTS.md \"TikTok: a "
                               "centred codebook\").", 0.99)
    store: Literal["buffer", "table"] = _doc(
        "Where the code vectors live: `table` = one TorchRec EmbeddingBagCollection (tables codes_coarse, "
        "codes_fine) that train.sharding shards and checkpoints with the ID tables, read by a no-grad lookup "
        "(never touched by an optimizer; models/codebook_table.py); `buffer` = replicated plain buffers.", "table")

    def restarts_in(self, epoch: int) -> bool:
        """Whether dead-code restarts act in epoch `epoch` (0-based): the one place that reads the two keys."""
        return self.dead_code_threshold > 0 and (self.restart_epochs == 0 or epoch < self.restart_epochs)

    def refits_in(self, epoch: int) -> bool:
        """Whether the codes are re-fitted by k-means at the start of epoch `epoch` (0-based)."""
        return (self.refit_every > 0 and epoch >= self.refit_start
                and (epoch - self.refit_start) % self.refit_every == 0)


class PriorAttention(nn.Module):
    """sum_k P_k a_ik W_v c_k / sum_k P_k a_ik with a_ik = exp(<W_q x_i, W_k c_k> / (tau sqrt(d))).

    Computed as a softmax over k of the logits plus log P_k (the normaliser cancels), so it is
    one [N, K] matmul and exactly the prior-weighted sum over *all* codes.
    """

    def __init__(self, dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)  # the W of the adjustment
        self.scale = 1.0 / (temperature * math.sqrt(dim))

    def forward(self, x: torch.Tensor, codes: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        # <W_q x, W_k c> / (tau sqrt d) = x . (W_q^T W_k c) / (tau sqrt d): the key side is folded into
        # one [d, K] matrix first, so the N rows take one matmul instead of a projection and a matmul
        # (N = every item each step, K = 32..128; the same logits up to float rounding).
        keys = (self.key(codes) @ self.query.weight).T * self.scale
        logits = torch.addmm(prior.clamp_min(1e-30).log(), x, keys)
        return torch.softmax(logits, dim=-1) @ self.value(codes)


@dataclass
class BackdoorOutput:
    x_bd: torch.Tensor                    # adjusted content [N, d]
    z_q: torch.Tensor | None              # straight-through quantised ẑ [N, d] (None when off)
    codes: tuple[torch.Tensor, ...]       # (coarse idx [N],) or (coarse idx, fine idx)
    loss: torch.Tensor                    # loss_weight * commit (ready to add)
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # unweighted, for logging


class Backdoor(nn.Module):
    """x^bd = x + back-door term; quantises ẑ with one or two `VectorQuantizer` levels.

    Args:
        dim: d.
        cfg: `BackdoorConfig`.
        store_factory: (num_codes, dim) -> CodebookStore, called per level; overrides `cfg.store`
            (`table`: one `CodebookTable` for all levels, held as `self.codebook`; `buffer`: buffers).
    """

    def __init__(self, dim: int, cfg: BackdoorConfig | None = None,
                 store_factory: Callable[[int, int], CodebookStore] | None = None) -> None:
        super().__init__()
        cfg = cfg or BackdoorConfig()
        self.cfg, self.dim = cfg, dim
        self.codebook: nn.Module | None = None  # the CodebookTable when the codes live in a TorchRec table
        self._collapse_warned: set[str] = set()  # levels warn_if_collapsed has warned about
        if not cfg.enabled:
            self.levels = nn.ModuleList()
            return
        sizes = [cfg.coarse_codes] + ([cfg.fine_codes] if cfg.hierarchical else [])
        if min(sizes) < 1:
            raise ValueError(f"Backdoor: code counts must be >= 1, got {sizes}")
        make = store_factory or BufferCodebookStore
        if store_factory is None and cfg.store == "table":
            from models.codebook_table import CodebookTable  # it imports this module
            self.codebook = CodebookTable(sizes, dim)
            make = self.codebook.make_store
        self.levels = nn.ModuleList([VectorQuantizer(k, dim, cfg, make(k, dim)) for k in sizes])
        self.attention = nn.ModuleList([PriorAttention(dim, cfg.temperature) for _ in sizes])
        if cfg.center:  # registered only when on, so checkpoints of runs without it load unchanged
            self.register_buffer("mean", torch.zeros(dim))
            self.register_buffer("mean_ready", torch.tensor(False))

    @torch.no_grad()
    def _track_mean(self, z_e: torch.Tensor, update: bool, reduce: bool = False) -> None:
        """With `center`: set m from z_e's mean if it has none yet; with `update`, one EMA step of m towards it.

        `reduce`: z_e is this rank's share of the rows (sums and counts summed over ranks; every
        rank holds the same `mean_ready`, so all of them enter the collective or none)."""
        if not self.cfg.center or (bool(self.mean_ready) and not update):
            return
        stats = torch.cat([z_e.detach().sum(0), z_e.new_tensor([float(z_e.shape[0])])])
        if reduce:
            stats = (self.levels[0].reduce_fn or all_reduce_sum)(stats)
        batch_mean = stats[:-1] / stats[-1].clamp_min(1.0)
        if not bool(self.mean_ready):
            self.mean.copy_(batch_mean)
            self.mean_ready.fill_(True)
        elif update:
            self.mean.lerp_(batch_mean, 1 - self.cfg.center_decay)

    def centred(self, z_e: torch.Tensor) -> torch.Tensor:
        """What the first level quantises: ẑ - m with `center`, else ẑ."""
        return z_e - self.mean if self.cfg.center else z_e

    def code_values(self, level: int = 0) -> torch.Tensor:
        """A level's codes in ẑ's space (a private copy): m + C1 for the coarse level with `center`;
        the fine level's codes are offsets of the residual either way."""
        codes = self.levels[level].codes()
        return codes + self.mean if self.cfg.center and level == 0 else codes

    def start_epoch(self, epoch: int) -> None:
        """Called before epoch `epoch` (0-based): dead-code restarts stop after `restart_epochs` epochs."""
        for vq in self.levels:
            vq.restarts_on = self.cfg.restarts_in(epoch)

    @torch.no_grad()
    def refit_(self, z_e_all: torch.Tensor, epoch: int) -> None:
        """K-means re-fit of every level on all items' ẑ [N, d] (`refit_every`): coarse codes on ẑ,
        fine codes on the residuals the re-fitted coarse codes leave. Seeded by the epoch, so a run
        resumed from a checkpoint re-fits exactly as the uninterrupted run did."""
        self._reread_codes()
        generator = torch.Generator(device=z_e_all.device).manual_seed(epoch)
        self._track_mean(z_e_all, update=False)
        residual = self.centred(z_e_all)
        for vq in self.levels:
            idx = vq.refit_(residual, self.cfg.refit_iters, generator)
            residual = residual - vq.store.weight()[idx]

    def _reread_codes(self) -> None:
        """Table-backed codes: drop the cached copy, so the next read looks the table up (a collective
        once sharded; called at the start of forward / assign / refresh_prior, identically on every rank)."""
        if self.codebook is not None:
            self.codebook.invalidate()

    def forward(self, x: torch.Tensor, z_e: torch.Tensor) -> BackdoorOutput:
        """Adjust content x [N, d] with the codebook that quantises the confounder estimate z_e [N, d]."""
        zero = x.new_zeros(())
        if not self.cfg.enabled:
            return BackdoorOutput(x, None, (), zero, {"commit": zero})
        self._reread_codes()
        self._track_mean(z_e, update=self.training, reduce=self.levels[0].reduce_fn is not None)
        residual, total_q, term = self.centred(z_e), torch.zeros_like(z_e), torch.zeros_like(x)
        if self.cfg.center:
            total_q = total_q + self.mean
        idxs, commits = [], []
        for level, (vq, attn) in enumerate(zip(self.levels, self.attention)):
            q, idx, commit = vq(residual)
            # Read after the EMA step (a private copy), so every level attends to current codes.
            term = term + attn(x, self.code_values(level), vq.prior())
            residual = residual - q  # q carries no gradient: the fine level's loss reaches ẑ
            total_q = total_q + q
            idxs.append(idx)
            commits.append(commit)
        commit = self.cfg.beta * sum(commits)
        z_q = z_e + (total_q - z_e).detach()  # straight-through: forward z_q, backward identity
        terms = {"commit": commit.detach()}
        for name, vq, idx in zip(("coarse", "fine"), self.levels, idxs):
            p = torch.bincount(idx, minlength=vq.num_codes).float() / idx.numel()
            terms[f"perplexity_{name}"] = torch.exp(-(p * p.clamp_min(1e-12).log()).sum())
        return BackdoorOutput(x + term, z_q, tuple(idxs), self.cfg.loss_weight * commit, terms)

    @torch.no_grad()
    def assign(self, z_e: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Code indices of every row of z_e per level (chunked; no state change). Interpretability."""
        self._reread_codes()
        idxs, residual = [], self.centred(z_e)
        for vq in self.levels:
            codes = vq.store.weight()
            idx = vq.nearest(residual, codes)
            residual = residual - codes[idx]
            idxs.append(idx)
        return tuple(idxs)

    @torch.no_grad()
    def refresh_prior(self, z_e_all: torch.Tensor, reduce: bool = False) -> tuple[torch.Tensor, ...]:
        """Recount P(c) from the assignments of all items' ẑ (once per epoch in `counts` mode).

        `reduce`: sum the counts over ranks (when each rank passes only its share of the items).
        Returns the per-level indices (useful for interpretability / NMI against the simulator).
        """
        self._reread_codes()
        self._track_mean(z_e_all, update=False, reduce=reduce)
        residual = self.centred(z_e_all)
        # Codes not initialised yet (a refresh before the first step): initialise from these items.
        for vq in self.levels if not all(bool(vq.initialized) for vq in self.levels) else ():
            vq.maybe_data_init(residual, reduce)
            codes = vq.store.weight()
            residual = residual - codes[vq.nearest(residual, codes)]
        idxs = self.assign(z_e_all)
        for vq, idx in zip(self.levels, idxs):
            vq.prior_counts.copy_(vq.counts_of(idx, reduce))
        return idxs

    def dictionary(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(coarse codes [K1, d], their prior [K1]) for the front-door cross-sample term, None when off."""
        if not self.cfg.enabled:
            return None
        return self.code_values(0), self.levels[0].prior()

    def level_names(self) -> tuple[str, ...]:
        """("coarse",) or ("coarse", "fine"): the names used in logged statistics."""
        return ("coarse", "fine")[:len(self.levels)]

    @torch.no_grad()
    def usage_counts(self) -> dict[str, list[int]]:
        """Items assigned to each code at the last `refresh_prior`, per level (for the usage plot)."""
        return {name: [int(c) for c in vq.prior_counts.round().tolist()]
                for name, vq in zip(self.level_names(), self.levels)}

    def warn_if_collapsed(self, epoch: int) -> list[str]:
        """Warn (once per level) when a level holds every item on one code and neither a restart nor a
        scheduled k-means re-fit can revive the others: its adjustment is then a constant vector,
        whatever the prior says. Returns the levels warned about now. Why: on TikTok without restarts the coarse level does exactly this
        from epoch 2 on (docs/RESULTS.md "TikTok: the coarse codebook without restarts"), and
        nothing else in a run says so.
        """
        warned = []
        for name, vq in zip(self.level_names(), self.levels):
            if (vq.num_codes > 1 and vq.codes_in_use() == 1 and not vq.restarts_on and self.cfg.refit_every == 0
                    and name not in self._collapse_warned):
                self._collapse_warned.add(name)
                warned.append(name)
                warnings.warn(f"back-door {name} codebook: every item is on one of its {vq.num_codes} codes at epoch "
                              f"{epoch + 1} and neither dead-code restarts nor k-means re-fits are on, so this "
                              "level's adjustment adds a constant (see model.causal.backdoor.refit_every, "
                              "restart_epochs, dead_code_threshold)",
                              RuntimeWarning, stacklevel=2)
        return warned

    @torch.no_grad()
    def usage_stats(self) -> dict[str, float]:
        """Per level: `<level>_used` codes with >= 1 item, `<level>_perplexity` exp(H(P(c))) of the
        prior the adjustment uses, `<level>_dead_fraction` share of codes with no item.

        Why: a codebook that collapses to a few codes (perplexity far below K) cannot stand for the
        confounder's strata, and the adjustment then averages over almost nothing. Counts are those
        of the last refresh over all items (the EMA restarts act during training; a code they
        revived that still wins no item is dead here).
        """
        stats: dict[str, float] = {}
        for name, vq in zip(self.level_names(), self.levels):
            used = vq.codes_in_use()
            p = vq.prior().double()
            entropy = -(p * p.clamp_min(1e-300).log()).sum()
            stats[f"{name}_used"] = float(used)
            stats[f"{name}_perplexity"] = float(entropy.exp())
            stats[f"{name}_dead_fraction"] = 1.0 - used / vq.num_codes
        return stats
