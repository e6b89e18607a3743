"""BPR training triples (user, positive item, negative item), split evenly over workers.

Every worker draws the same global permutation of the training edges for an epoch (same
seed, same epoch) and takes its own slice of each global batch. That keeps the number of
steps identical on every rank -- required, because each step's sharded-table lookup is a
collective -- and makes W workers on batch B/W see exactly the edges one worker sees on
batch B. Negatives are drawn per rank (rank-specific stream) uniformly from the items the
user has not interacted with in training, as MMRec does.
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
    negatives: np.ndarray


class BPRSampler:
    def __init__(self, train: CSR, *, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 resample_rounds: int = 10) -> None:
        if train.indices.size == 0:
            raise ValueError("BPRSampler: the training graph has no edges")
        self.train = train
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.resample_rounds = resample_rounds
        self.users = np.repeat(np.arange(train.num_rows, dtype=np.int64), train.degrees())
        self.items = train.indices.astype(np.int64, copy=False)
        # Sorted user*num_items+item keys: membership of (u, j) is one searchsorted, no sets.
        self._keys = self.users * train.num_cols + self.items  # CSR order is already sorted
        self._neg_rng = np.random.default_rng([seed, rank, 1])

    def steps_per_epoch(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """This rank's share of every global batch of `epoch`, in a seed-determined order."""
        order = np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.users))
        for start in range(0, len(order), self.batch_size):
            global_batch = order[start:start + self.batch_size]
            mine = global_batch[self.rank::self.world_size]
            users = self.users[mine]
            yield Batch(users=users, positives=self.items[mine], negatives=self.negatives(users))

    def negatives(self, users: np.ndarray) -> np.ndarray:
        """Uniform items the user has not trained on (a few vectorised rejection rounds)."""
        num_items = self.train.num_cols
        neg = self._neg_rng.integers(0, num_items, size=len(users))
        for _ in range(self.resample_rounds):
            clash = self._is_train_edge(users, neg)
            if not clash.any():
                break
            neg[clash] = self._neg_rng.integers(0, num_items, size=int(clash.sum()))
        return neg

    def _is_train_edge(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.train.num_cols + items
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, len(self._keys) - 1)
        return self._keys[pos] == keys

    def state_dict(self) -> dict:
        return {"neg_rng": self._neg_rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self._neg_rng.bit_generator.state = state["neg_rng"]
