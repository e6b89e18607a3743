"""trainer/loop.py's choice of splits: which are evaluated, which one selects the epoch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from data_loaders.format import DatasetError, Manifest, Split
from trainer.config import load_config
from trainer.loop import present_splits
from trainer.main import main

REPO = Path(__file__).resolve().parents[2]


def _manifest(**splits: int) -> Manifest:
    counts = {"train": 10, "valid": 2, "test": 2, "unbiased_test": 0, "unbiased_valid": 0, **splits}
    return Manifest(format_version=1, name="m", num_users=3, num_items=4, num_interactions=sum(counts.values()),
                    splits=counts, modalities={}, files={}, truth=[], source={}, created_at="")


def test_unbiased_splits_are_evaluated_when_present() -> None:
    cfg = load_config(None, [])
    assert present_splits(cfg, _manifest()) == ((Split.TRAIN, Split.VALID, Split.TEST), Split.VALID)
    wanted, select = present_splits(cfg, _manifest(unbiased_test=5, unbiased_valid=5))
    assert wanted == (Split.TRAIN, Split.VALID, Split.TEST, Split.UNBIASED_TEST, Split.UNBIASED_VALID)
    assert select == Split.VALID  # present is not chosen: the default stays the protocol's valid
    # A manifest written before the split existed has no key for it at all.
    old = dataclasses.replace(_manifest(unbiased_test=5), splits={"train": 10, "valid": 2, "test": 2, "unbiased_test": 5})
    assert present_splits(cfg, old)[0][-1] == Split.UNBIASED_TEST


def test_selecting_on_a_missing_split_is_an_error_naming_it() -> None:
    cfg = load_config(None, ["--eval.select_split=unbiased_valid", "--data.url=/data/ds"])
    assert present_splits(cfg, _manifest(unbiased_valid=3))[1] == Split.UNBIASED_VALID
    with pytest.raises(DatasetError) as err:
        present_splits(cfg, _manifest(unbiased_test=5))
    text = str(err.value)
    assert "/data/ds/manifest.json" in text and "splits.unbiased_valid" in text and "--unbiased-valid-per-user" in text


def test_main_refuses_it_before_starting_ray(tmp_path: Path, capsys) -> None:
    url = str(tmp_path / "plain")  # a simulator dataset made without --unbiased-valid-per-user
    subprocess.run([sys.executable, "-m", "data_loaders.prepare", "--from", "synthetic", "--users", "60",
                    "--items", "40", "--num-categories", "2", "--styles-per-category", "2", "--to", url],
                   check=True, cwd=REPO, capture_output=True)
    code = main([f"--data.url={url}", f"--run.storage_path={tmp_path / 'runs'}", "--eval.select_split=unbiased_valid"])
    assert code == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and "splits.unbiased_valid" in err
    assert not (tmp_path / "runs").exists()  # refused before the run directory was made


def test_select_split_takes_only_known_splits() -> None:
    with pytest.raises(Exception, match="eval.select_split"):
        load_config(None, ["--eval.select_split=unbiased_test"])  # choosing on test is not offered
