"""Stand-in features for timing content models on interaction-only data (benchmarks/stand_in.py)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.stand_in import parse_spec, with_stand_in_features
from data_loaders.format import Split
from data_loaders.stream import open_dataset


def test_parse_spec() -> None:
    assert parse_spec("image:4096,text:384") == {"image": 4096, "text": 384}
    for bad in ("image", "image:0", "image:x", "image:4,image:5", ":3"):
        with pytest.raises(ValueError, match="name:size"):
            parse_spec(bad)


def test_copy_keeps_interactions_and_adds_labelled_random_features(tiny_synthetic: str, tmp_path) -> None:
    src = open_dataset(tiny_synthetic)
    out = open_dataset(with_stand_in_features(tiny_synthetic, str(tmp_path / "copy"), {"image": 7, "text": 3}))
    assert out.manifest.num_items == src.manifest.num_items and out.manifest.num_users == src.manifest.num_users
    want, got = src.load_interactions(), out.load_interactions()
    for column in ("user_id", "item_id", "split"):
        np.testing.assert_array_equal(got[column], want[column])
    assert out.manifest.splits[Split.TRAIN.name.lower()] == src.manifest.splits[Split.TRAIN.name.lower()]
    image = out.load_item_features("image")
    assert image.shape == (src.manifest.num_items, 7) and out.load_item_features("text").shape[1] == 3
    assert abs(float(image.std()) - 1.0) < 0.2  # standard-normal stand-ins, not the source's features
    assert out.manifest.source["stand_in_features"] == {"image": 7, "text": 3}
