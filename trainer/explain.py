"""Explain a finished run's recommendations and codebook (issue 3, part 5).

    python -m trainer.explain --run DIR --user U [--k 20] [--json]
    python -m trainer.explain --run DIR --codes [--out DIR] [--members 5] [--json]
    python -m trainer.explain --run DIR --parts [--epoch N] [--json]

Both rebuild the model of the run's best checkpoint on CPU (trainer/restore.py) and print a
markdown table (`--json`: the same content, machine-readable). `--data URL` reads the dataset
from elsewhere when it moved since training.

`--user`: the user's top-K items (training items masked, ranked exactly as the evaluator ranks
them: trainer.evaluate.topk_items on model.final_embeddings()). For `model.name=causal` each
score ŷ_ui = <h_u, h_i> with h_u = ẽ_u + g_fd h_u^fd and h_i = ẽ_i + g_bd x_i^bd + g_fd h_i^fd
(g: the model's learned scalar gates, 1 without them) is split into ID <h_u, ẽ_i>, back-door
<h_u, g_bd x_i^bd> and front-door <h_u, g_fd h_i^fd> (the three sum to the score), and the
user's training edges are listed with their front-door edge score and whether the reconstructed
causal subgraph kept them. Other models print the score only.

`--codes` (causal model with the back-door on): per code of each level its prior P(c), the items
assigned to it now and the members closest to the code vector; writes code_usage.png and
items_by_code.png (trainer/explain_plots.py) to --out, by default `<run>/explain/` -- not the run
directory itself, whose code_usage.png (trainer/plots.py, drawn from the training history and
linked from results.md) would otherwise be replaced by a different figure.

`--parts` (causal model): each part of the score over all users and items -- how much it moves
the ranking, how much of it is one shared vector, how popular its favourites are
(trainer/explain_parts.py). `--epoch N` reads the checkpoint written after epoch N instead of the
best one (any mode; Ray keeps only some checkpoints, and the error lists them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

import numpy as np
import torch

from data_loaders.format import Split
from models.vq import VectorQuantizer
from models.causal import CausalRec
from trainer.evaluate import topk_items
from trainer.ranking import popularity_column, ranking_embeddings, with_popularity_offset
from trainer.restore import RestoredRun, RestoreError, restore_run


def _header(run: RestoredRun) -> dict[str, Any]:
    return {"run": run.run_dir, "model": run.cfg.model.name, "checkpoint": run.checkpoint,
            "checkpoint_epoch": run.state.epoch, "best_epoch": run.metrics.get("best_epoch")}


@torch.no_grad()
def explain_user(run: RestoredRun, user: int, k: int = 20) -> dict[str, Any]:
    """Top-k items of `user` with their score parts (causal model), and the user's training edges."""
    train = run.splits[Split.TRAIN]
    if not 0 <= user < train.num_rows:
        raise RestoreError(f"user {user} out of range: the dataset at {run.cfg.data.url} has {train.num_rows} "
                           f"users (ids 0..{train.num_rows - 1})")
    if k < 1:
        raise RestoreError(f"--k must be >= 1, got {k}")
    model = run.model
    causal = isinstance(model, CausalRec)
    beta, popularity = run.cfg.eval.popularity_offset, popularity_column(train)
    if causal:
        r = model.represent()  # eval mode: no EMA step; final_embeddings() is (r.user, r.item)
        user_emb, item_emb = with_popularity_offset(r.user, r.item, popularity, beta)
    else:
        user_emb, item_emb = ranking_embeddings(model, train, beta)
    scores, items = topk_items(user_emb, item_emb, np.array([user]), k, [train])
    found = items[0] >= 0  # fewer than k unseen items: -1 padding
    items, scores = items[0][found], scores[0][found]
    held = {int(i): "test" for i in run.splits[Split.TEST].row(user)}
    held.update({int(i): "valid" for i in run.splits[Split.VALID].row(user)})
    rows = [{"rank": n + 1, "item": int(i), "score": float(s), "held_out": held.get(int(i), "")}
            for n, (i, s) in enumerate(zip(items.tolist(), scores.tolist()))]
    out = {**_header(run), "user": user, "k": k, "train_items": int(train.row(user).size), "top": rows,
           "decomposed": causal, "edges": []}
    if not causal:
        out["note"] = f"score decomposition and edges need model.name=causal (this run: {run.cfg.model.name})"
        return out
    # The gates g_bd, g_fd (learned scalars; 1.0 in a model without them) scale the content terms
    # inside h_u and h_i, so each part carries its gate: the parts then sum to the score exactly.
    g_bd, g_fd = (float(getattr(r, f"gate_{name}", 1.0)) for name in ("backdoor", "frontdoor"))
    # float64 parts: their sum equals the float32 score to rounding, whatever the item norms.
    h_u = r.user[user].double()
    parts = {"id": (r.id_item, 1.0), "backdoor": (r.backdoor_item, g_bd), "frontdoor": (r.frontdoor_item, g_fd)}
    if r.view_item is not None:  # causal.views: the item's content-kNN view is a fourth part of h_i
        parts["views"] = (r.view_item, float(r.gate_views))
    values = {name: (gate * (rep[items].double() @ h_u)).tolist() for name, (rep, gate) in parts.items()}
    if beta:  # eval.popularity_offset: beta * log(1 + n_i), a part of the ranking score (trainer/ranking.py)
        values["popularity"] = (beta * popularity[torch.as_tensor(items)]).tolist()
    out["gates"] = {"backdoor": g_bd, "frontdoor": g_fd}
    if r.view_item is not None:
        out["gates"]["views"] = float(r.gate_views)
    if r.content_user is not None:  # causal.user_content_in_score: h_u also holds g_uc c_u
        out["gates"]["user_content"] = float(r.gate_user_content)
    codes = model.backdoor.assign(r.confounder[items]) if model.cfg.backdoor.enabled else ()
    # The ranking is under do(uniform exposure): b_i is not in the score; shown for reference.
    exposure = model.exposure(torch.as_tensor(items)).tolist() if model.exposure.enabled else None
    if exposure is not None:
        out["exposure"] = model.cfg.exposure.mode
    for n, row in enumerate(rows):
        row.update({name: values[name][n] for name in values})
        row["codes"] = [int(c[n]) for c in codes]
        if exposure is not None:
            row["exposure_term"] = exposure[n]
    out["edges"] = _user_edges(model, r, user)
    last = int(model.frontdoor.last_refresh)  # 0-based epoch whose start rebuilt the subgraph; -1: never
    out["last_refresh_epoch"] = last + 1 if last >= 0 else None
    return out


def _user_edges(model: CausalRec, r: Any, user: int) -> list[dict[str, Any]]:
    """The user's training edges: kept/pruned and weight of the current subgraph, the score that
    decided it (at the last refresh; NaN before the first) and the scorer's score at these weights."""
    fd = model.frontdoor
    sel = (fd.edge_user == user).nonzero().flatten()
    edge_items = fd.edge_item[sel]
    now = torch.full((sel.numel(),), float("nan"))
    if fd.cfg.enabled and sel.numel():
        user_content = fd.user_content(r.backdoor_item)
        logits = fd.edge_logits(fd.edge_user[sel], edge_items, user_content, r.backdoor_item, r.id_user, r.id_item)
        now = torch.sigmoid(logits)
    return [{"item": int(i), "kept": bool(k), "weight": float(w), "score_at_refresh": float(s), "score_now": float(n)}
            for i, k, w, s, n in zip(edge_items.tolist(), fd.kept[sel].tolist(), fd.weight[sel].tolist(),
                                     fd.score[sel].tolist(), now.tolist())]


@torch.no_grad()
def explain_codes(run: RestoredRun, members: int = 5) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(report, arrays for the plots): per level and code its prior, size and closest members."""
    model = run.model
    if not isinstance(model, CausalRec) or not model.cfg.backdoor.enabled:
        raise RestoreError(f"--codes needs model.name=causal with model.causal.backdoor.enabled=true "
                           f"(run {run.run_dir}: model.name={run.cfg.model.name})")
    r = model.represent()
    # With backdoor.center the first level quantises ẑ - m: the geometry and the plot live in that space.
    centred = model.backdoor.centred(r.confounder)
    residual, levels, coarse = centred, [], None
    for name, vq in zip(model.backdoor.level_names(), model.backdoor.levels):
        # The same residual assignment as Backdoor.assign, keeping each item's distance to its code.
        codes = vq.store.weight()
        idx = vq.nearest(residual, codes)
        dist = (residual - codes[idx]).norm(dim=1)
        sizes = torch.bincount(idx, minlength=vq.num_codes)
        prior = vq.prior()
        rows = []
        for c in range(vq.num_codes):
            member = (idx == c).nonzero().flatten()
            closest = member[dist[member].argsort()[:members]]
            rows.append({"code": c, "prior": float(prior[c]), "size": int(sizes[c]),
                         "prior_count": float(vq.prior_counts[c]),
                         "top_items": closest.tolist(), "distances": dist[closest].tolist()})
        levels.append({"level": name, "num_codes": vq.num_codes, "geometry": _geometry(vq, residual, codes),
                       "codes": rows})
        coarse = idx if coarse is None else coarse
        residual = residual - codes[idx]
    report = {**_header(run), "num_items": int(r.confounder.shape[0]), "levels": levels}
    arrays = {"confounder": centred, "coarse": coarse, "coarse_codes": model.backdoor.levels[0].store.weight()}
    return report, arrays


def _geometry(vq: VectorQuantizer, z: torch.Tensor, codes: torch.Tensor) -> dict[str, float]:
    """Where a level's inputs and codes sit, and how a fresh k-means would split the inputs.

    Why: a level that holds every item on one code either has inputs without structure or codes
    stranded where the inputs used to be; a k-means of the same inputs (a throwaway copy of the
    level, seed 0) tells the two apart (docs/RESULTS.md "TikTok: a k-means re-fit of the codebook").
    """
    mean = z.mean(0)
    probe = VectorQuantizer(vq.num_codes, z.shape[1], dataclasses.replace(vq.cfg, store="buffer"))
    sizes = torch.bincount(probe.refit_(z, vq.cfg.refit_iters, torch.Generator(device=z.device).manual_seed(0)),
                           minlength=vq.num_codes).double()
    p = sizes / sizes.sum()
    norms = codes.norm(dim=1)
    return {"input_mean_norm": float(z.norm(dim=1).mean()), "input_norm_of_mean": float(mean.norm()),
            "input_spread": float((z - mean).norm(dim=1).mean()),
            "code_norm_min": float(norms.min()), "code_norm_max": float(norms.max()),
            "kmeans_perplexity": float(torch.exp(-(p * p.clamp_min(1e-300).log()).sum()))}


def _num(x: float) -> str:
    return "nan" if x != x else f"{x:.4f}"


def render_user(rep: dict[str, Any]) -> str:
    lines = [f"# User {rep['user']}: top {len(rep['top'])} of run {rep['run']} ({rep['model']})", "",
             f"Checkpoint after epoch {rep['checkpoint_epoch']} (best epoch {rep['best_epoch']}); "
             f"{rep['train_items']} training items masked. held out: the item is in the user's valid/test set.", ""]
    if not rep["decomposed"]:
        lines += ["| rank | item | score | held out |", "|---|---|---|---|"]
        lines += [f"| {t['rank']} | {t['item']} | {_num(t['score'])} | {t['held_out']} |" for t in rep["top"]]
        return "\n".join(lines + ["", f"Note: {rep['note']}.", ""])
    g = rep["gates"]
    views = bool(rep["top"]) and "views" in rep["top"][0]  # causal.views: a fourth part, v_i / ||v_i||
    user_terms = ("ẽ_u + g_fd h_u^fd" + (" + g_uc c_u" if "user_content" in g else "")
                  + (" + g_v v_u/||v_u||" if views else ""))
    user_gate = f", g_uc = {g['user_content']:.4f}" if "user_content" in g else ""
    pop = bool(rep["top"]) and "popularity" in rep["top"][0]  # eval.popularity_offset != 0
    lines += ["score = ID <h_u, ẽ_i> + back-door <h_u, g_bd x_i^bd> + front-door <h_u, g_fd h_i^fd>"
              + (f" + views <h_u, g_v v_i/||v_i||> (g_v = {g['views']:.4f})" if views else "")
              + (" + popularity beta log(1 + n_i) (eval.popularity_offset)" if pop else "")
              + f", h_u = {user_terms} (docs/MODEL.md §5, §4c); gates g_bd = {g['backdoor']:.4f}, "
              f"g_fd = {g['frontdoor']:.4f}{user_gate}.", "",
              "| rank | item | score | ID | back-door | front-door |" + (" views |" if views else "")
              + (" popularity |" if pop else "") + " codes | held out |",
              "|---|---|---|---|---|---|" + ("---|" if views else "") + ("---|" if pop else "") + "---|---|"]
    lines += [f"| {t['rank']} | {t['item']} | {_num(t['score'])} | {_num(t['id'])} | {_num(t['backdoor'])} | "
              f"{_num(t['frontdoor'])} |" + (f" {_num(t['views'])} |" if views else "")
              + (f" {_num(t['popularity'])} |" if pop else "")
              + f" {'/'.join(map(str, t['codes'])) or '—'} | {t['held_out']} |" for t in rep["top"]]
    if rep.get("exposure"):
        lines += ["", f"Ranked under do(uniform exposure): the exposure term b_i ({rep['exposure']}, docs/MODEL.md §4b) "
                  "is trained with the score and left out of it; per item: "
                  + ", ".join(f"{t['item']}: {_num(t['exposure_term'])}" for t in rep["top"]) + "."]
    refreshed = rep["last_refresh_epoch"]
    lines += ["", f"## Training edges ({len(rep['edges'])}); causal subgraph "
              + (f"last reconstructed at the start of epoch {refreshed}" if refreshed else "never reconstructed (all kept, weight 1)"),
              "", "s = sigmoid(edge score); at refresh: the score that decided kept/pruned; now: at these weights.", "",
              "| item | kept | weight | s at refresh | s now |", "|---|---|---|---|---|"]
    lines += [f"| {e['item']} | {'kept' if e['kept'] else 'pruned'} | {_num(e['weight'])} | "
              f"{_num(e['score_at_refresh'])} | {_num(e['score_now'])} |" for e in rep["edges"]]
    return "\n".join(lines + [""])


def render_codes(rep: dict[str, Any]) -> str:
    lines = [f"# Codebook of run {rep['run']} (checkpoint after epoch {rep['checkpoint_epoch']})", "",
             "prior: P(c) the back-door adjustment uses (counts of the refresh at the start of that epoch); "
             f"items: assigned now, of {rep['num_items']}; top items: closest to the code vector (distance).", ""]
    for level in rep["levels"]:
        g = level["geometry"]
        lines += [f"## {level['level']} ({level['num_codes']} codes)", "",
                  f"inputs: mean norm {g['input_mean_norm']:.3f}, norm of their mean {g['input_norm_of_mean']:.3f}, "
                  f"mean distance to their mean {g['input_spread']:.3f}; code norms {g['code_norm_min']:.3f}-"
                  f"{g['code_norm_max']:.3f}; a fresh k-means of these inputs into {level['num_codes']} clusters: "
                  f"perplexity {g['kmeans_perplexity']:.1f}", "",
                  "| code | prior | items | top items |", "|---|---|---|---|"]
        lines += [f"| {c['code']} | {c['prior']:.4f} | {c['size']} | "
                  + ", ".join(f"{i} ({d:.3f})" for i, d in zip(c["top_items"], c["distances"])) + " |"
                  for c in level["codes"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory (<run.storage_path>/<run.name>)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--user", type=int, help="explain this user's top-K")
    what.add_argument("--codes", action="store_true", help="the codebook: per code prior, size, members; PNGs")
    what.add_argument("--parts", action="store_true", help="each score part over all users and items")
    parser.add_argument("--epoch", type=int, help="the checkpoint written after this epoch (default: the best)")
    parser.add_argument("--k", type=int, default=20, help="top-K items (--user)")
    parser.add_argument("--members", type=int, default=5, help="closest items listed per code (--codes)")
    parser.add_argument("--out", help="directory for the PNGs of --codes (default <run>/explain)")
    parser.add_argument("--data", help="dataset URL, when it moved since training (default: the config's data.url)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    try:
        run = restore_run(args.run, args.data, args.epoch)
        if args.parts:
            from trainer.explain_parts import explain_parts, render_parts

            rep = explain_parts(run)
            print(json.dumps(rep, indent=1) if args.json else render_parts(rep))
            return 0
        if args.user is not None:
            rep = explain_user(run, args.user, args.k)
            print(json.dumps(rep, indent=1) if args.json else render_user(rep))
            return 0
        rep, arrays = explain_codes(run, args.members)
        from trainer.explain_plots import write_code_plots

        rep["plots"] = write_code_plots(rep, arrays, args.out or f"{run.run_dir}/explain")
        print(json.dumps(rep, indent=1) if args.json else render_codes(rep) + "\n" + "\n".join(
            f"wrote {p}" for p in rep["plots"]))
        return 0
    except RestoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
