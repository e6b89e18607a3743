"""experiments/term_gradients.py: per-loss-term gradients on the ID tables at a checkpoint."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("term_gradients", ROOT / "experiments" / "term_gradients.py")
term_gradients = importlib.util.module_from_spec(spec)
spec.loader.exec_module(term_gradients)


def test_hand_case_norms_cosines_and_radial_parts() -> None:
    user = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    item = torch.nn.Parameter(torch.tensor([[1.0, -1.0]]))
    a, b = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[2.0, 0.0]])
    out = {"bpr": (user * a).sum() + (item * b).sum(),  # gradients a and b
           "contrast": -0.5 * (user * a).sum(),           # against bpr on the user table, none on the item table
           "reg": torch.tensor(1.0)}                      # no gradient path: skipped
    rows = {(r["term"], r["table"]): r for r in term_gradients.term_gradients(out, {"user": user, "item": item})}
    assert set(rows) == {("bpr", "user"), ("bpr", "item"), ("contrast", "user"), ("contrast", "item")}
    assert rows["bpr", "user"]["norm"] == pytest.approx(2 ** 0.5) and rows["bpr", "item"]["norm"] == pytest.approx(2.0)
    assert rows["contrast", "user"]["cos_bpr"] == pytest.approx(-1.0)
    assert rows["contrast", "item"]["norm"] == 0.0 and rows["contrast", "item"]["cos_bpr"] == 0.0
    assert rows["bpr", "user"]["radial"] == pytest.approx(1.0 + 4.0)        # <a, user>
    assert rows["contrast", "user"]["radial"] == pytest.approx(-2.5)
    assert rows["bpr", "item"]["radial"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="has a gradient"):
        term_gradients.term_gradients({"reg": torch.tensor(1.0)}, {"user": user})


def test_cli_on_a_causal_run(tiny_synthetic, tmp_path: Path, capsys) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "trainer"))
    from test_explain import CAUSAL, _world_of_one

    run = _world_of_one([f"--data.url={tiny_synthetic}", *CAUSAL, "--model.causal.contrast.view=mediator"],
                        tmp_path / "tg", epochs=1)
    assert term_gradients.main(["--run", run, "--batch", "64"]) == 0
    printed = capsys.readouterr().out
    assert "| bpr | user |" in printed and "| contrast | item |" in printed
    # With the mediator view the contrastive term reaches the ID rows: a nonzero gradient norm.
    contrast_user = next(ln for ln in printed.splitlines() if ln.startswith("| contrast | user |"))
    assert float(contrast_user.split("|")[4]) > 0
    assert term_gradients.main(["--run", str(tmp_path / "nowhere")]) == 2
