"""The causal simulator: determinism, dataset invariants, and that the planted effects are there."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scipy.cluster.vq import kmeans2

from data_loaders.format import DatasetError, Split
from data_loaders.importers import synthetic
from data_loaders.importers.synthetic import SimulatorParams, generate, simulate
from data_loaders.stream import open_dataset

REPO = Path(__file__).resolve().parents[3]
SMALL = SimulatorParams(num_users=600, num_items=400)


@pytest.fixture(scope="module")
def demo() -> synthetic.SimulatedData:
    return simulate(SimulatorParams())


def _columns(d: synthetic.SimulatedData) -> dict[str, np.ndarray]:
    return {"user_id": d.user_id, "item_id": d.item_id, "split": d.split, "is_noise": d.is_noise}


def _nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information (arithmetic mean of the entropies)."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    joint /= joint.sum()
    pa_, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = (joint[nz] * np.log(joint[nz] / np.outer(pa_, pb)[nz])).sum()
    ent = lambda q: -(q[q > 0] * np.log(q[q > 0])).sum()  # noqa: E731
    return float(2 * mi / (ent(pa_) + ent(pb)))


def _kmeans(x: np.ndarray, k: int, restarts: int = 5) -> np.ndarray:
    """Labels of the lowest-inertia k-means++ run (k-means has local minima)."""
    best, best_inertia = None, np.inf
    for seed in range(restarts):
        centroids, labels = kmeans2(x, k, minit="++", seed=seed)
        inertia = ((x - centroids[labels]) ** 2).sum()
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def _top_category_share(users: np.ndarray, cats: np.ndarray, k: int) -> float:
    """Mean over users of the share of their items falling in their most frequent category."""
    counts = np.zeros((users.max() + 1, k))
    np.add.at(counts, (users, cats), 1)
    total = counts.sum(1)
    return float((counts.max(1)[total > 0] / total[total > 0]).mean())


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    a, b, c = simulate(SMALL), simulate(SMALL), simulate(dataclasses.replace(SMALL, seed=1))
    for name, col in _columns(a).items():
        np.testing.assert_array_equal(col, _columns(b)[name])
    for m in a.features:
        np.testing.assert_array_equal(a.features[m], b.features[m])
    assert a.truth.equals(b.truth)
    assert a.item_id.size != c.item_id.size or not np.array_equal(a.item_id, c.item_id)
    assert not np.array_equal(a.features["image"], c.features["image"])
    assert not a.truth.equals(c.truth)


def test_blocks_are_reproducible_alone() -> None:
    # The second user block, simulated by itself, equals its rows in the whole dataset.
    p = dataclasses.replace(SMALL, num_users=synthetic.USER_BLOCK + 100)
    whole = simulate(p)
    block = synthetic.simulate_block(p, synthetic.build_world(p), 1)
    mine = whole.user_id >= synthetic.USER_BLOCK
    for name, col in _columns(whole).items():
        np.testing.assert_array_equal(col[mine], block[name])


def test_dataset_invariants(demo: synthetic.SimulatedData) -> None:
    p, d = demo.params, demo
    assert d.user_id.dtype == np.int64 and d.item_id.dtype == np.int64
    assert d.split.dtype == np.int8 and d.is_noise.dtype == bool
    assert d.user_id.min() == 0 and d.user_id.max() < p.num_users
    assert d.item_id.min() >= 0 and d.item_id.max() < p.num_items
    keys = d.user_id * p.num_items + d.item_id
    assert np.unique(keys).size == keys.size, "duplicate (user, item) pairs"
    train = d.split == Split.TRAIN
    assert np.array_equal(np.unique(d.user_id[train]), np.arange(p.num_users)), "a user without train"
    assert not d.is_noise[~train].any(), "noise outside train"
    assert abs(d.is_noise[train].mean() - p.noise_rate) < 0.015
    genuine = ~d.is_noise & (d.split != Split.UNBIASED_TEST)
    counts = np.bincount(d.user_id[genuine], minlength=p.num_users)
    held = np.bincount(d.user_id[(d.split == Split.VALID) | (d.split == Split.TEST)],
                       minlength=p.num_users)
    assert (held[counts < p.min_interactions_to_split] == 0).all(), "short users must be all-train"
    assert 0.15 < held.sum() / counts.sum() < 0.25  # valid + test ~ 10% + 10%
    unbiased = np.bincount(d.user_id[d.split == Split.UNBIASED_TEST], minlength=p.num_users)
    assert unbiased.max() == p.unbiased_per_user and unbiased.mean() > 0.95 * p.unbiased_per_user
    truth = d.truth.to_pydict()
    assert truth["item_id"] == list(range(p.num_items))
    assert max(truth["confounder"]) < p.num_categories and max(truth["fine_confounder"]) < p.num_styles
    assert {m: f.shape for m, f in d.features.items()} == {"image": (1000, 64), "text": (1000, 48)}
    assert all(f.dtype == np.float32 for f in d.features.values())


def test_confounder_is_recoverable_from_every_modality(demo: synthetic.SimulatedData) -> None:
    p = demo.params
    coarse = demo.truth["confounder"].to_numpy()
    fine = demo.truth["fine_confounder"].to_numpy()
    standardised = {m: (f - f.mean(0)) / f.std(0) for m, f in demo.features.items()}
    for m, x in standardised.items():
        assert _nmi(_kmeans(x, p.num_categories), coarse) > 0.75, m
    both = np.concatenate(list(standardised.values()), axis=1)
    assert _nmi(_kmeans(both, p.num_categories), coarse) > 0.85
    assert _nmi(_kmeans(both, p.num_styles), fine) > 0.75


def test_preference_depends_on_the_confounder(demo: synthetic.SimulatedData) -> None:
    p, d = demo.params, demo
    coarse = d.truth["confounder"].to_numpy()
    rows = (d.split == Split.TRAIN) & ~d.is_noise
    users, items = d.user_id[rows], d.item_id[rows]
    observed = _top_category_share(users, coarse[items], p.num_categories)
    rng = np.random.default_rng(0)
    shuffled = _top_category_share(users, coarse[rng.integers(0, p.num_items, items.size)],
                                   p.num_categories)
    assert observed > shuffled + 0.15
    # The knob: with w_z = 0 the taste over Z no longer drives choices.
    flat = simulate(dataclasses.replace(p, confounder_weight=0.0))
    rows = (flat.split == Split.TRAIN) & ~flat.is_noise
    flat_share = _top_category_share(flat.user_id[rows], coarse[flat.item_id[rows]], p.num_categories)
    assert flat_share < observed - 0.1


def _exposure_stats(d: synthetic.SimulatedData, truth: pa.Table) -> tuple[float, float]:
    """(mean-propensity ratio, promoted-share difference) of observed vs unbiased_test items."""
    pop = truth["popularity"].to_numpy()
    promoted = truth["promoted"].to_numpy()
    observed = d.item_id[~d.is_noise & (d.split != Split.UNBIASED_TEST)]
    unbiased = d.item_id[d.split == Split.UNBIASED_TEST]
    return (float(pop[observed].mean() / pop[unbiased].mean()),
            float(promoted[observed].mean() - promoted[unbiased].mean()))


def _gini(items: np.ndarray, n: int) -> float:
    c = np.sort(np.bincount(items, minlength=n)).astype(float)
    return float(1 - 2 * (np.cumsum(c) / c.sum()).sum() / n + 1 / n)


def test_exposure_bias_is_visible_and_tunable(demo: synthetic.SimulatedData) -> None:
    d, n = demo, demo.params.num_items
    ratio, promoted_gap = _exposure_stats(d, d.truth)
    assert ratio > 3 and promoted_gap > 0.05
    observed = d.item_id[~d.is_noise & (d.split != Split.UNBIASED_TEST)]
    unbiased = d.item_id[d.split == Split.UNBIASED_TEST]
    # Same number of draws for both so the Gini difference is not a sample-size effect.
    sample = np.random.default_rng(0).choice(observed, unbiased.size, replace=False)
    assert _gini(sample, n) > _gini(unbiased, n) + 0.15
    # Without popularity and promotion bias the observed edges look like unbiased_test. The
    # same seed gives the same items, so the biased world's propensities still label them.
    fair = simulate(dataclasses.replace(d.params, popularity_exponent=0.0, promotion_boost=1.0))
    ratio, promoted_gap = _exposure_stats(fair, d.truth)
    assert 0.8 < ratio < 1.25 and abs(promoted_gap) < 0.03


def test_unbiased_valid_is_drawn_apart_and_leaves_the_other_splits_alone() -> None:
    base = simulate(SMALL)
    with_valid = simulate(dataclasses.replace(SMALL, unbiased_valid_per_user=4))
    assert not (base.split == Split.UNBIASED_VALID).any()
    # Drawn last: every other row is the dataset without it, row for row.
    rest = with_valid.split != Split.UNBIASED_VALID
    for name, col in _columns(base).items():
        np.testing.assert_array_equal(_columns(with_valid)[name][rest], col, err_msg=name)
    v = with_valid.split == Split.UNBIASED_VALID
    per_user = np.bincount(with_valid.user_id[v], minlength=SMALL.num_users)
    assert per_user.max() == 4 and per_user.mean() > 0.95 * 4
    assert not with_valid.is_noise[v].any()
    # Disjoint from every (user, item) pair the user already has, unbiased_test included.
    keys = with_valid.user_id * SMALL.num_items + with_valid.item_id
    assert np.unique(keys).size == keys.size
    # Drawn like unbiased_test (uniform exposure): far less popularity-skewed than observed edges.
    pop = with_valid.truth["popularity"].to_numpy()
    observed = with_valid.item_id[~with_valid.is_noise & (with_valid.split <= Split.TEST)]
    test = with_valid.item_id[with_valid.split == Split.UNBIASED_TEST]
    assert pop[with_valid.item_id[v]].mean() < 0.5 * pop[observed].mean()
    assert 0.8 < pop[with_valid.item_id[v]].mean() / pop[test].mean() < 1.25


@pytest.mark.parametrize("bad", [
    {"num_items": 10},                      # fewer items than styles
    {"noise_rate": 1.0},
    {"valid_fraction": 0.5, "test_fraction": 0.5},
    {"modalities": "image:0"},
    {"modalities": "image"},
    {"min_interactions": 0},
    {"coarse_concentration": 0.0},
    {"unbiased_valid_per_user": -1},
])
def test_bad_params_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match="SimulatorParams"):
        SimulatorParams(**bad)


def test_write_then_read_back(tmp_path: Path) -> None:
    p = dataclasses.replace(SMALL, num_users=300, num_items=200, modalities="image:8,text:4")
    url = str(tmp_path / "ds")
    manifest = generate(url, p)
    d = simulate(p)
    ds = open_dataset(url)
    assert ds.verify() == len(manifest.files)
    assert (ds.manifest.num_users, ds.manifest.num_items) == (300, 200)
    assert ds.manifest.modalities == {"image": 8, "text": 4}
    assert ds.manifest.source == {"importer": "synthetic", **dataclasses.asdict(p)}
    assert ds.manifest.splits == {s.name.lower(): int((d.split == s).sum()) for s in Split}
    got = ds.load_interactions(columns=("user_id", "item_id", "split", "is_noise"))
    for name, col in _columns(d).items():
        np.testing.assert_array_equal(got[name], col)
    for m, f in d.features.items():
        np.testing.assert_array_equal(ds.load_item_features(m), f)
    assert ds.load_truth("items").equals(d.truth)


def test_cli_flags_cover_every_field_and_run(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    synthetic.add_cli_arguments(parser)
    fields = dataclasses.fields(SimulatorParams)
    defaults = parser.parse_args([])
    assert {f.name: getattr(defaults, f.name) for f in fields} == dataclasses.asdict(SimulatorParams())
    args = parser.parse_args(["--users", "120", "--num-items", "80", "--noise-rate", "0.2",
                              "--modalities", "image:4", "--styles-per-category", "1"])
    manifest = synthetic.run_from_args(args, str(tmp_path / "cli"), overwrite=False)
    assert (manifest.num_users, manifest.num_items) == (120, 80)
    assert manifest.source["noise_rate"] == 0.2 and manifest.modalities == {"image": 4}
    truth = open_dataset(str(tmp_path / "cli")).load_truth("items")
    assert "fine_confounder" not in truth.column_names  # no hierarchy with one style per category
    with pytest.raises(DatasetError, match="num_items"):  # the CLI prints it and exits with 2
        synthetic.run_from_args(parser.parse_args(["--items", "3"]), str(tmp_path / "bad"), False)
    assert not (tmp_path / "bad").exists()


def test_every_parameter_is_documented() -> None:
    doc = (REPO / "docs" / "SIMULATOR.md").read_text()
    for f in dataclasses.fields(SimulatorParams):
        assert f.metadata["help"], f.name
        assert f"`{f.name}`" in doc, f"{f.name} missing from docs/SIMULATOR.md"
