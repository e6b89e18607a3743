"""Vector quantisation with EMA codes, dead-code restarts and k-means re-fits: one level of the
back-door's codebook (docs/MODEL.md §3, "Vector quantisation"; `models/backdoor.py` stacks the levels).

    k(i) = argmin_k ||z_i - C_k||,   z_q = z + sg(C_k(i) - z)   (straight-through),
    C_k <- EMA of the mean of the z assigned to k (no gradient),
    loss = beta * ||z - sg(C_k(i))||^2   (commitment, trains the encoder).

Code vectors live behind `CodebookStore` (weight(), ema_update_(), restart_()): in a TorchRec table
sharded like the ID tables (models/codebook_table.py) or in a replicated buffer
(`BufferCodebookStore`). Why a module of its own: the quantiser is used alone by
`trainer/explain.py` and the table store, and knows nothing of the adjustment over codes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch
import torch.distributed as dist
from torch import nn

from models.kmeans import lloyd

if TYPE_CHECKING:  # the quantiser reads its level's keys from the back-door's one config
    from models.backdoor import BackdoorConfig


def _dist_world() -> int:
    """World size when a torch.distributed group is up, else 1."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """t summed over ranks in place (a no-op without a process group)."""
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
        self.reduce_fn: Callable[[torch.Tensor], torch.Tensor] | None = all_reduce_sum if cfg.allreduce_stats else None

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
            rows = (self.reduce_fn or all_reduce_sum)(rows)
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
        return all_reduce_sum(counts) if reduce else counts
