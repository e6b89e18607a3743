"""BPR training triples (user, positive item, negative item), split evenly over workers.

Every worker draws the same global permutation of the training edges for an epoch (same
seed, same epoch) and takes its own slice of each global batch. That keeps the number of
steps identical on every rank -- required, because each step's sharded-table lookup is a
collective -- and makes W workers on batch B/W see exactly the edges one worker sees on
batch B. Negatives are drawn per rank (rank-specific stream) uniformly from the items the
user has not interacted with in training, as MMRec does, exactly (no rejection loop). With
`negatives` = k > 1 each positive enters its batch k times, each time with its own negative
(RecBole's `neg_sampling: {uniform: k}`): the BPR term becomes the mean over k negatives.
With `candidates` = M > 1 every triple carries M uniform candidate negatives ([n, M]) and the model
keeps the one it currently scores highest (dynamic negative sampling, Zhang et al. SIGIR 2013;
`models/bpr.py` `hardest_negatives`): the sampler cannot score, so it only draws the pool. With
`candidate_epochs` = N > 0 the pools are drawn in the first N epochs only, and after them pools of
`late_candidates` (1, the default: uniform negatives). With `popularity_power` = a > 0 every draw
from epoch `popularity_from_epoch` on (single negatives and candidate pools alike; 0: from the
first) is from the user's non-training items with probability
proportional to (1 + n_i)^a, n_i the item's training interactions (RecBole's `distribution:
popularity` is a = 1; word2vec's 0.75): uniform negatives make popularity the easiest way to tell a
positive from a negative, and drawing popular items more often as negatives takes part of that
shortcut away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from data_loaders.graph import CSR


@dataclass
class Batch:
    users: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray  # [n], or [n, M] candidates with `candidates` = M > 1


class BPRSampler:
    def __init__(self, train: CSR, *, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 negatives: int = 1, candidates: int = 1, candidate_epochs: int = 0, late_candidates: int = 1,
                 popularity_power: float = 0.0, popularity_from_epoch: int = 0) -> None:
        if train.indices.size == 0:
            raise ValueError("BPRSampler: the training graph has no edges")
        if negatives < 1:
            raise ValueError(f"BPRSampler: negatives per positive must be >= 1, got {negatives}")
        if candidates < 1:
            raise ValueError(f"BPRSampler: candidate negatives per triple must be >= 1, got {candidates}")
        if candidate_epochs < 0:
            raise ValueError(f"BPRSampler: candidate_epochs must be >= 0 (0 = every epoch), got {candidate_epochs}")
        if late_candidates < 1:
            raise ValueError(f"BPRSampler: late_candidates must be >= 1 (1 = uniform), got {late_candidates}")
        if not (np.isfinite(popularity_power) and popularity_power >= 0):
            raise ValueError(f"BPRSampler: popularity_power must be finite and >= 0 (0 = uniform), got {popularity_power}")
        if popularity_from_epoch < 0:
            raise ValueError(f"BPRSampler: popularity_from_epoch must be >= 0, got {popularity_from_epoch}")
        self.num_negatives = negatives
        self.num_candidates = candidates
        self.candidate_epochs = candidate_epochs  # pools only in epochs < this (0: every epoch)
        self.late_candidates = late_candidates    # the pool size after them
        self.train = train
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.users = np.repeat(np.arange(train.num_rows, dtype=np.int64), train.degrees())
        self.items = train.indices.astype(np.int64, copy=False)
        self._degree = train.degrees().astype(np.int64)
        position_in_row = np.arange(len(self.items)) - np.repeat(train.indptr[:-1], self._degree)
        self._shifted_keys = self.users * (train.num_cols + 1) + (self.items - position_in_row)
        self._neg_rng = np.random.default_rng([seed, rank, 1])
        self.popularity_power = float(popularity_power)
        self.popularity_from_epoch = popularity_from_epoch
        if self.popularity_power > 0:
            weight = (1.0 + np.bincount(self.items, minlength=train.num_cols)) ** self.popularity_power
            self._cumulative = np.cumsum(weight)  # inverse-CDF draws over every item
            self._edge_keys = self.users * train.num_cols + self.items  # sorted: rows ascend, columns sorted within

    def steps_per_epoch(self) -> int:
        full, rest = divmod(len(self.users), self.batch_size)
        return full + (rest >= self.world_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """This rank's share of every global batch of `epoch`, in a seed-determined order."""
        order = np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.users))
        for start in range(0, len(order), self.batch_size):
            global_batch = order[start:start + self.batch_size]
            # Equal per-rank batches (row-wise sharding needs them; an empty rank would average a
            # NaN loss into everyone's gradient): drop the < world_size leftover edges of the
            # last batch. They land elsewhere in the next epoch's permutation.
            global_batch = global_batch[: len(global_batch) - len(global_batch) % self.world_size]
            if len(global_batch) == 0:
                break
            # A positive's k triples sit next to each other; k = 1 draws exactly the stream it always did.
            mine = np.repeat(global_batch[self.rank::self.world_size], self.num_negatives)
            users = self.users[mine]
            yield Batch(users=users, positives=self.items[mine], negatives=self._draw(users, epoch))

    def candidates_in(self, epoch: int) -> int:
        """The pool size M of `epoch` (0-based): `candidates`, then `late_candidates` after `candidate_epochs`."""
        return self.late_candidates if 0 < self.candidate_epochs <= epoch else self.num_candidates

    def _draw(self, users: np.ndarray, epoch: int) -> np.ndarray:
        # M = 1 draws exactly the stream it always did; M > 1: row b holds M draws for users[b].
        m = self.candidates_in(epoch)
        popular = epoch >= self.popularity_from_epoch
        if m == 1:
            return self.negatives(users, popular=popular)
        return self.negatives(np.repeat(users, m), popular=popular).reshape(len(users), m)

    def negatives(self, users: np.ndarray, *, popular: bool = True) -> np.ndarray:
        """Exactly uniform over the items the user has not trained on, without rejection (by
        popularity with `popularity_power` > 0 and `popular`: `_popularity_negatives`).

        Draw r uniform in [0, num_items - degree(u)) and return the r-th non-training item:
        with the user's sorted training items s_0 < s_1 < ..., that item is r + #{t : s_t - t <= r}.
        The shifted values s_t - t are non-decreasing within a row, so one searchsorted over
        the global key array user * (num_items + 1) + (s_t - t) counts them for every user at once.
        """
        free = self.train.num_cols - self._degree[users]
        if (free <= 0).any():
            bad = int(users[np.argmax(free <= 0)])
            raise ValueError(f"BPRSampler: user {bad} has interacted with every item; no negative exists")
        if self.popularity_power > 0 and popular:
            return self._popularity_negatives(users)
        r = (self._neg_rng.random(len(users)) * free).astype(np.int64)
        below = np.searchsorted(self._shifted_keys, users * (self.train.num_cols + 1) + r, side="right")
        return r + below - self.train.indptr[users]

    def _popularity_negatives(self, users: np.ndarray) -> np.ndarray:
        """Draws over all items by (1 + n_i)^a, redrawing those the user trained on (rejection).

        Rejection keeps the distribution exactly proportional over the user's free items. A user
        whose training items hold nearly all the mass would make it slow, so after a few rounds the
        rest are drawn exactly from their own masked weights (rare: O(items) each).
        """
        num_items = self.train.num_cols
        out = np.empty(len(users), dtype=np.int64)
        todo = np.arange(len(users))
        for _ in range(32):
            draw = np.searchsorted(self._cumulative, self._neg_rng.random(len(todo)) * self._cumulative[-1], side="right")
            draw = np.minimum(draw, num_items - 1)  # a draw of exactly the total (float rounding)
            key = users[todo] * num_items + draw
            at = np.minimum(np.searchsorted(self._edge_keys, key), len(self._edge_keys) - 1)
            trained = self._edge_keys[at] == key
            out[todo[~trained]] = draw[~trained]
            todo = todo[trained]
            if todo.size == 0:
                return out
        weight = np.diff(self._cumulative, prepend=0.0)
        for b in todo:
            w = weight.copy()
            w[self.train.row(int(users[b]))] = 0.0
            out[b] = self._neg_rng.choice(num_items, p=w / w.sum())
        return out

    def state_dict(self) -> dict:
        return {"neg_rng": self._neg_rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self._neg_rng.bit_generator.state = state["neg_rng"]
