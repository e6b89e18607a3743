"""What a causal run's scores are made of, over all users and items (`python -m trainer.explain --parts`).

The causal score is ŷ_ui = <h_u, h_i> with h_i = ẽ_i + g_bd x_i^bd + g_fd h_i^fd (+ g_v v_i), so
each part p of h_i gives every user a score vector s^p_u = <h_u, g_p p_i> over the items, and
the parts sum to the score (`--user` shows them for one user's top-K). This report summarises
them for the whole catalogue, to answer questions a single user's list cannot:

- how much each part moves the ranking: the standard deviation of s^p_u over the items, averaged
  over users (a part that adds the same amount to every item does not change any ranking);
- how much of a part is one vector shared by all items: ‖mean_i g_p p_i‖ beside mean_i ‖g_p p_i‖.
  A shared item vector only shifts each user's scores, but the same on the user side (‖mean_u
  h_u‖, reported too) turns a shared item direction into one item score for everybody: a
  popularity term;
- how popular a part's favourites are: the Pearson correlation over items of mean_u s^p_u with
  log(1 + the item's training degree).

With the front-door's `output: sum` and its cross-sample term on, two sub-rows split the front-door
part into the mediator m (propagated on the kept subgraph) and the cross-sample term x̄.

Why it exists: docs/RESULTS.md "TikTok: dynamic negative sampling" (fifth round) traced the
valid curve's fall after the warm start to a popularity term; these figures are how.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from data_loaders.format import Split
from models.causal import CausalRec
from trainer.ranking import popularity_column
from trainer.restore import RestoredRun, RestoreError

USER_CHUNK = 1024  # users scored at once: a [1024, items] block per part


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denom if denom > 0 else float("nan")


@torch.no_grad()
def explain_parts(run: RestoredRun) -> dict[str, Any]:
    """Per part of h_i (and the total): its gate, norms, ranking spread and popularity correlation."""
    model = run.model
    if not isinstance(model, CausalRec):
        raise RestoreError(f"--parts needs model.name=causal (run {run.run_dir}: model.name={run.cfg.model.name})")
    r = model.represent()
    user = r.user.double()
    parts: dict[str, tuple[torch.Tensor, float]] = {"id": (r.id_item, 1.0)}
    if model.cfg.backdoor.enabled:
        parts["backdoor"] = (r.backdoor_item, float(r.gate_backdoor))
    if model.cfg.frontdoor.enabled:
        parts["frontdoor"] = (r.frontdoor_item, float(r.gate_frontdoor))
    if r.view_item is not None:
        parts["views"] = (r.view_item, float(r.gate_views))
    rows = {name: gate * rep.double() for name, (rep, gate) in parts.items()}
    fd = model.cfg.frontdoor
    if fd.enabled and fd.cross_sample and fd.output == "sum":
        # h^fd = m + x̄: the mediator (the kept subgraph's propagation) and the cross-sample term,
        # shown apart (two sub-rows of `frontdoor`; the parts above still sum to the total).
        g_fd = parts["frontdoor"][1]
        rows["frontdoor.mediator"] = g_fd * r.mediator_item.double()
        rows["frontdoor.cross_sample"] = g_fd * (r.frontdoor_item - r.mediator_item).double()
    rows["total"] = r.item.double()
    log_degree = popularity_column(run.splits[Split.TRAIN]).numpy()  # log(1 + training degree)
    num_users = user.shape[0]
    out_parts = []
    for name, item in rows.items():
        spread, mean_score = 0.0, torch.zeros(item.shape[0], dtype=torch.float64)
        for start in range(0, num_users, USER_CHUNK):
            scores = user[start:start + USER_CHUNK] @ item.T  # [chunk, items]
            spread += float(scores.std(dim=1).sum())
            mean_score += scores.sum(dim=0)
        mean_score /= num_users
        out_parts.append({
            "part": name, "gate": parts[name.split(".")[0]][1] if name.split(".")[0] in parts else None,
            "row_norm": float(item.norm(dim=1).mean()), "norm_of_mean_row": float(item.mean(0).norm()),
            "score_spread": spread / num_users,
            "popularity_corr": _pearson(mean_score.numpy(), log_degree)})
    return {"run": run.run_dir, "model": run.cfg.model.name, "checkpoint": run.checkpoint,
            "checkpoint_epoch": run.state.epoch, "best_epoch": run.metrics.get("best_epoch"),
            "num_users": num_users, "num_items": int(r.item.shape[0]),
            "user_row_norm": float(user.norm(dim=1).mean()), "user_norm_of_mean_row": float(user.mean(0).norm()),
            "parts": out_parts}


def render_parts(rep: dict[str, Any]) -> str:
    lines = [f"# Score parts of run {rep['run']} (checkpoint after epoch {rep['checkpoint_epoch']}, "
             f"best epoch {rep['best_epoch']})", "",
             f"Over {rep['num_users']} users and {rep['num_items']} items. Part p of h_i, gated: g_p p_i; "
             "its score s^p_ui = <h_u, g_p p_i> (the parts sum to the total). spread: std of s^p_u over items, "
             "mean over users; shared: ‖mean_i g_p p_i‖; popularity corr: Pearson over items of mean_u s^p_u "
             "with log(1 + training degree). frontdoor.mediator / frontdoor.cross_sample: the front-door part's "
             "two terms, g_fd m_i and g_fd x̄_i (sub-rows of frontdoor).", "",
             f"Users: mean ‖h_u‖ {rep['user_row_norm']:.4f}, ‖mean_u h_u‖ {rep['user_norm_of_mean_row']:.4f}.", "",
             "| part | gate | mean row norm | shared (norm of mean row) | spread | popularity corr |",
             "|---|---|---|---|---|---|"]
    for p in rep["parts"]:
        gate = "—" if p["gate"] is None else f"{p['gate']:.4f}"
        lines.append(f"| {p['part']} | {gate} | {p['row_norm']:.4f} | {p['norm_of_mean_row']:.4f} | "
                     f"{p['score_spread']:.4f} | {p['popularity_corr']:.3f} |")
    return "\n".join(lines + [""])
