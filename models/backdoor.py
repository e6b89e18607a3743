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

Code vectors live behind `CodebookStore` (weight(), ema_update_(), restart_()): with `store: table`
(default) in a TorchRec table sharded like the ID tables (models/codebook_table.py), with
`store: buffer` in a plain replicated buffer (`BufferCodebookStore`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
import torch.distributed as dist
from torch import nn

from models.kmeans import lloyd


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


def _dist_world() -> int:
    """World size when a torch.distributed group is up, else 1."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if _dist_world() > 1:
        dist.all_reduce(t)
    return t


def _broadcast0(t: torch.Tensor) -> torch.Tensor:
    """Rank 0's copy everywhere: random restarts must leave every rank with the same codebook."""
    if _dist_world() > 1:
        dist.broadcast(t, src=0)
    return t


class CodebookStore(nn.Module):
    """Where the code vectors of one level live. Subclass to back them by a sharded table."""

    num_codes: int
    dim: int

    def weight(self) -> torch.Tensor:
        """All codes [K, d] (a detached view; never trained by gradient)."""
        raise NotImplementedError

    def ema_count(self) -> torch.Tensor:
        """EMA member counts N_k [K]."""
        raise NotImplementedError

    def ema_update_(self, counts: torch.Tensor, sums: torch.Tensor, decay: float, eps: float) -> None:
        """One EMA step from already (rank-)summed batch statistics n_k [K] and s_k [K, d]."""
        raise NotImplementedError

    def restart_(self, index: torch.Tensor, vectors: torch.Tensor, count: float | torch.Tensor = 1.0) -> None:
        """Set codes `index` to `vectors` and their EMA state to `count` members at that vector
        (one number for all, or one per code)."""
        raise NotImplementedError


@torch.no_grad()
def ema_step_(count: torch.Tensor, sum_: torch.Tensor, counts: torch.Tensor, sums: torch.Tensor,
              decay: float, eps: float) -> torch.Tensor:
    """One EMA step of the state (count N [K], sum m [K, d]) in place; returns the new codes [K, d].

    N <- g N + (1-g) n ;  m <- g m + (1-g) s ;  c = m / N~, N~ Laplace-smoothed (Sonnet's VQ-VAE-EMA).
    Shared by every `CodebookStore`, so the buffer and table stores cannot drift apart.
    """
    count.mul_(decay).add_(counts.to(count), alpha=1 - decay)
    sum_.mul_(decay).add_(sums.to(sum_), alpha=1 - decay)
    total = count.sum()
    smoothed = (count + eps) / (total + count.numel() * eps) * total
    return sum_ / smoothed.clamp_min(1e-12).unsqueeze(1)


def member_counts(count: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`count` (a number or one per code) as a tensor of `like`'s dtype and device, for restart_."""
    return torch.as_tensor(count, dtype=like.dtype, device=like.device)


class BufferCodebookStore(CodebookStore):
    """Codes and EMA state as plain (replicated, checkpointed) buffers.

    The EMA state starts as "one member sitting at the code" (N = 1, m = c) and a restart sets
    it to "N members at the code" (m = N c), so a code without members keeps its vector (N and
    m decay together) until it is declared dead.
    """

    def __init__(self, num_codes: int, dim: int) -> None:
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        codes = torch.randn(num_codes, dim) / math.sqrt(dim)
        self.register_buffer("codes", codes)
        self.register_buffer("count", torch.ones(num_codes))
        self.register_buffer("sum", codes.clone())

    def weight(self) -> torch.Tensor:
        return self.codes

    def ema_count(self) -> torch.Tensor:
        return self.count

    @torch.no_grad()
    def ema_update_(self, counts: torch.Tensor, sums: torch.Tensor, decay: float, eps: float) -> None:
        self.codes.copy_(ema_step_(self.count, self.sum, counts, sums, decay, eps))

    @torch.no_grad()
    def restart_(self, index: torch.Tensor, vectors: torch.Tensor, count: float | torch.Tensor = 1.0) -> None:
        count = member_counts(count, self.count)
        self.codes[index] = vectors.to(self.codes)
        self.sum[index] = vectors.to(self.sum) * count.unsqueeze(-1)
        self.count[index] = count


class VectorQuantizer(nn.Module):
    """One codebook level: nearest-code assignment, commitment loss, EMA, dead-code restart, prior.

    `reduce_fn` sums a statistics tensor over data-parallel ranks in place; it defaults to
    torch.distributed's all_reduce when `cfg.allreduce_stats`, and can be replaced by the caller.
    """

    def __init__(self, num_codes: int, dim: int, cfg: BackdoorConfig, store: CodebookStore | None = None) -> None:
        super().__init__()
        self.cfg, self.num_codes = cfg, num_codes
        self.store = store if store is not None else BufferCodebookStore(num_codes, dim)
        self.register_buffer("prior_counts", torch.zeros(num_codes))  # counts over all items (refresh_prior)
        self.register_buffer("initialized", torch.tensor(not cfg.data_init))
        # Off after `restart_epochs` epochs (set by Backdoor.start_epoch; recomputed every epoch, so
        # nothing to checkpoint).
        self.restarts_on = cfg.restarts_in(0)
        self.reduce_fn: Callable[[torch.Tensor], torch.Tensor] | None = _all_reduce_sum if cfg.allreduce_stats else None

    def codes(self) -> torch.Tensor:
        """A private copy of the codes [K, d]: later in-place EMA steps cannot touch saved tensors."""
        return self.store.weight().detach().clone()

    @torch.no_grad()
    def nearest(self, z: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean) of every row of z [N, d], chunked."""
        codes = self.store.weight() if codes is None else codes
        c2 = codes.square().sum(1)  # ||z||^2 is the same for every code: argmin of ||c||^2 - 2 <z, c>
        return torch.cat([torch.addmm(c2, chunk, codes.T, alpha=-2).argmin(1)
                          for chunk in z.split(self.cfg.chunk_size)])

    def prior(self) -> torch.Tensor:
        """P(c_k) [K], summing to 1."""
        if self.cfg.prior == "ema":
            n = self.store.ema_count().detach().clamp_min(0)
            return n / n.sum().clamp_min(1e-12)
        n, a = self.prior_counts, self.cfg.prior_smoothing
        if float(n.sum()) + a <= 0:
            return torch.full_like(n, 1.0 / self.num_codes)
        return (n + a) / (n.sum() + self.num_codes * a)

    @torch.no_grad()
    def _random_rows(self, z: torch.Tensor, k: int) -> torch.Tensor:
        """k random rows of z (distinct when possible), identical on every rank."""
        pick = torch.randperm(z.shape[0], device=z.device)[:k] if z.shape[0] >= k else \
            torch.randint(z.shape[0], (k,), device=z.device)
        return _broadcast0(z[pick].clone())

    @torch.no_grad()
    def maybe_data_init(self, z: torch.Tensor, reduce: bool = False) -> bool:
        """With `data_init`, set the codes to random rows of z once (the first call); True if it did.

        Each code starts as its uniform share of the rows (N_k = rows / K): the EMA is at its
        scale from the first step and no code looks dead merely for being new. `reduce`: the
        rows are this rank's share (the row count is summed over ranks).
        """
        if bool(self.initialized):
            return False
        rows = z.new_tensor(float(z.shape[0]))
        if reduce:
            rows = (self.reduce_fn or _all_reduce_sum)(rows)
        self.store.restart_(torch.arange(self.num_codes, device=z.device),
                            self._random_rows(z.detach(), self.num_codes), float(rows) / self.num_codes)
        self.initialized.fill_(True)
        return True

    @torch.no_grad()
    def _ema_step(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        counts = torch.bincount(idx, minlength=self.num_codes).to(z.dtype)
        sums = z.new_zeros(self.num_codes, z.shape[1]).index_add_(0, idx, z)
        if self.reduce_fn is not None:
            counts, sums = self.reduce_fn(counts), self.reduce_fn(sums)
        self.store.ema_update_(counts, sums, self.cfg.ema_decay, self.cfg.ema_epsilon)
        if not self.restarts_on:
            return
        count = self.store.ema_count()
        mean = float(count.mean())
        dead = count < self.cfg.dead_code_threshold * mean
        if _dist_world() > 1:
            # Rank 0 decides, so every rank enters the restart's broadcast together even if the
            # replicated counts differ in the last bit.
            dead = _broadcast0(dead.to(torch.uint8)).bool()
        dead = dead.nonzero().flatten()
        if dead.numel():
            # Restarted with the mean count: treated as an average code, it has as long to win
            # members as any other before it can be declared dead again.
            self.store.restart_(dead, self._random_rows(z, dead.numel()), mean)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q [N, d] the assigned code vectors (no gradient), idx [N], commitment ||z - sg(q)||^2 mean).

        In training mode this also applies one EMA step (after assigning with the current codes)
        and restarts dead codes. Straight-through: the caller forms z + (q - z).detach().
        """
        if self.training:
            self.maybe_data_init(z, reduce=self.reduce_fn is not None)
        codes = self.codes()
        idx = self.nearest(z.detach(), codes)
        q = codes[idx]
        commit = (z - q).square().mean()
        if self.training:
            self._ema_step(z.detach(), idx)
        return q, idx, commit

    @torch.no_grad()
    def refit_(self, z: torch.Tensor, iters: int, generator: torch.Generator) -> torch.Tensor:
        """Re-fit the codes by k-means (Lloyd, `iters` rounds) on all rows of z [N, d]; returns their codes [N].

        Starts from K random rows of z (drawn with `generator`, so every rank draws the same) and
        assigns with `nearest`, the rule the level quantises by. The EMA state becomes "the
        cluster's members at its centroid", scaled so the total EMA count is unchanged (the EMA
        counts are per step, not per catalog); an empty cluster keeps its start row with a small
        count. Rank 0's result is broadcast, as for restarts.
        """
        n, k = z.shape[0], self.num_codes
        start = torch.randperm(n, generator=generator, device=z.device)[:k] if n >= k else \
            torch.randint(n, (k,), generator=generator, device=z.device)
        codes = _broadcast0(lloyd(z, z[start].clone(), iters, self.nearest)[0])
        idx = self.nearest(z, codes)
        sizes = torch.bincount(idx, minlength=k).to(z.dtype)
        total = float(self.store.ema_count().sum()) if bool(self.initialized) else float(n)
        counts = (sizes / n * total).clamp_min(1e-3 * total / k)
        self.store.restart_(torch.arange(k, device=z.device), codes, counts)
        self.initialized.fill_(True)
        return idx

    def codes_in_use(self) -> int:
        """Codes holding at least one item at the last `refresh_prior`."""
        return int((self.prior_counts > 0).sum())

    @torch.no_grad()
    def counts_of(self, idx: torch.Tensor, reduce: bool = False) -> torch.Tensor:
        counts = torch.bincount(idx, minlength=self.num_codes).float()
        return _all_reduce_sum(counts) if reduce else counts


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
        residual = z_e_all
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
        residual, total_q, term = z_e, torch.zeros_like(z_e), torch.zeros_like(x)
        idxs, commits = [], []
        for vq, attn in zip(self.levels, self.attention):
            q, idx, commit = vq(residual)
            # Read after the EMA step (a private copy), so every level attends to current codes.
            term = term + attn(x, vq.codes(), vq.prior())
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
        idxs, residual = [], z_e
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
        residual = z_e_all
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
        return self.levels[0].codes(), self.levels[0].prior()

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
