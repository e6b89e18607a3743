"""A copy of a dataset with random item features of given sizes: for timing content models only.

Amazon Baby is available here with its interactions only (../shared/data/README.md: MMRec's
4096-d image and 384-d text features are not), so a content model cannot be *evaluated* on it.
Its cost, though, depends on the features' shapes and not on their values: with random vectors
of MMRec's Baby sizes the causal model's epoch takes the time it would take with the real ones.
Every table made from such a copy says so; no accuracy figure may come from it.
"""

from __future__ import annotations

import numpy as np

from data_loaders.writer import DatasetWriter
from data_loaders.stream import open_dataset

_CHUNK_ROWS = 65_536  # feature rows generated and written per step (memory ~ rows x size floats)


def parse_spec(text: str) -> dict[str, int]:
    """"image:4096,text:384" -> {"image": 4096, "text": 384} (>= 1 modality, positive sizes)."""
    out: dict[str, int] = {}
    for part in text.split(","):
        name, _, size = part.partition(":")
        if not name or not size.isdigit() or int(size) < 1 or name in out:
            raise ValueError(f"stand-in features: expected name:size[,name:size...], got {text!r}")
        out[name] = int(size)
    return out


def with_stand_in_features(src_url: str, dst_url: str, sizes: dict[str, int], seed: int = 0) -> str:
    """Write `src_url`'s interactions and standard-normal item features of `sizes` to `dst_url`."""
    source = open_dataset(src_url)
    manifest = source.manifest
    rng = np.random.default_rng(seed)
    with DatasetWriter(dst_url, overwrite=True) as writer:
        for batch in source.iter_interactions(columns=("user_id", "item_id", "split")):
            writer.write_interactions(batch)
        for modality, size in sizes.items():
            for start in range(0, manifest.num_items, _CHUNK_ROWS):
                ids = np.arange(start, min(start + _CHUNK_ROWS, manifest.num_items))
                writer.write_item_features(modality, ids, rng.standard_normal((len(ids), size), dtype=np.float32))
        writer.commit(name=f"{manifest.name}-stand-in-features", num_users=manifest.num_users,
                      num_items=manifest.num_items,
                      source={"stand_in_features": sizes, "seed": seed, "interactions_from": src_url})
    return dst_url
