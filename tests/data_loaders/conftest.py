"""Fixtures for the data_loaders tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

HEADER = "userID\titemID\trating\ttimestamp\tx_label\n"


def _write_mmrec(folder: Path, users, items, labels, features: dict[str, np.ndarray],
                 name: str = "tiny") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{u}\t{i}\t1\t0\t{s}\n" for u, i, s in zip(users, items, labels))
    (folder / f"{name}.inter").write_text(HEADER + lines)
    for modality, matrix in features.items():
        np.save(folder / f"{modality}_feat.npy", matrix)
    return folder


@pytest.fixture
def make_mmrec() -> Callable[..., Path]:
    """make_mmrec(folder, users, items, labels, features, name="tiny") writes an MMRec folder:
    <name>.inter (rating/timestamp as placeholders) and one <modality>_feat.npy per feature."""
    return _write_mmrec


@pytest.fixture
def mmrec_tiny(tmp_path: Path) -> dict:
    """A valid tiny MMRec folder (12 users, 9 items, image 4-d + text 3-d, all three splits)."""
    rng = np.random.default_rng(7)
    cover = np.arange(12) * 9 + np.arange(12) % 9  # every user and item 0..8 appears
    keys = rng.permutation(np.unique(np.concatenate([cover, [107], rng.choice(108, 50)])))
    users, items = keys // 9, keys % 9
    labels = np.array([0, 0, 0, 1, 2])[np.arange(len(keys)) % 5]
    features = {"image": rng.normal(size=(9, 4)).astype(np.float32),
                "text": rng.normal(size=(9, 3)).astype(np.float32)}
    src = _write_mmrec(tmp_path / "src", users, items, labels, features)
    return {"src": src, "users": users, "items": items, "labels": labels, "features": features}
