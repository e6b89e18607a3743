"""Check a causal run against the simulator's planted truth (issue 3, part 4; docs/SIMULATOR.md).

    python -m trainer.causal_checks --run DIR [--json OUT] [--data URL]

Rebuilds the run's best checkpoint on CPU (trainer/restore.py) and measures, on a dataset made by
`python -m data_loaders.prepare --from synthetic`:

- **codes vs confounder**: every item's back-door code per level (`Backdoor.assign` on the model's
  confounder estimate ẑ of `CausalRec.represent()`, eval mode, so no EMA step), and the NMI of
  the coarse codes with the planted coarse confounder (`truth/items.parquet` `confounder`), of the
  fine codes and of the (coarse, fine) pairs with the planted style (`fine_confounder`).
- **pruning vs noise**: the front-door's kept mask over the training edges against the
  interactions' `is_noise` column: the pruned fraction and the precision and recall of "a pruned
  edge is a noise edge" (`models.frontdoor.pruning_metrics`), next to what pruning at random
  achieves: precision = the noise fraction of the training edges, recall = the pruned fraction
  (`chance`), and the same for random pruning of exactly the model's number of edges per user
  (`chance_per_user`, which the per-user quota of `prune_by: ratio` makes the fairer baseline).
- the run's recorded `best_unbiased_test` / `best_test` figures (metrics.json), for the table of
  trainer/sim_report.py.

NMI is I(U; V) / ((H(U) + H(V)) / 2) from the contingency table, natural logarithms (the
arithmetic-mean normalisation, scikit-learn's default; 1.0 when both labelings are constant).

Edge order: the front-door's edges (`edge_user`, `edge_item`) are the training CSR's row ids and
column indices (models/causal.py), i.e. sorted by (user, item), which is not the file order of the
interactions; `is_noise` is mapped onto them by the (user, item) key (`noise_in_edge_order`), and an
edge without a row in the file is an error rather than a silent "not noise".
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import torch

from data_loaders.format import DatasetError, Split
from models.causal import CausalRec
from models.frontdoor import pruning_metrics
from trainer.restore import RestoredRun, RestoreError, restore_run

RESULT_FILE = "causal_checks.json"  # where experiments/simulator_checks.sh keeps each run's result


def contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Counts n[x, y] of the pairs (a_k, b_k); labels may be any integers (re-indexed densely)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.shape != b.shape:
        raise ValueError(f"labelings differ in length: {a.size} vs {b.size}")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max(initial=-1) + 1, bi.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (ai, bi), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """NMI of two labelings, arithmetic-mean normalisation: I / ((H(a) + H(b)) / 2)."""
    table = contingency(a, b).astype(np.float64)
    n = table.sum()
    if n == 0:
        raise ValueError("NMI of empty labelings")
    row, col = table.sum(1), table.sum(0)
    h_a, h_b = _entropy(row), _entropy(col)
    if h_a == 0.0 and h_b == 0.0:  # both constant: identical partitions
        return 1.0
    nz = table > 0
    mi = float((table[nz] / n * np.log(table[nz] * n / np.outer(row, col)[nz])).sum())
    return float(min(1.0, max(0.0, mi / ((h_a + h_b) / 2))))


def noise_in_edge_order(users: np.ndarray, items: np.ndarray, is_noise: np.ndarray,
                        edge_user: np.ndarray, edge_item: np.ndarray, num_items: int) -> np.ndarray:
    """`is_noise` of the interaction rows (users, items, any order) for each edge (edge_user[k],
    edge_item[k]); every edge must have a row. A (user, item) pair listed twice takes one of its rows."""
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    keys = users * num_items + items
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    wanted = np.asarray(edge_user, np.int64) * num_items + np.asarray(edge_item, np.int64)
    pos = np.searchsorted(sorted_keys, wanted)
    found = pos < sorted_keys.size
    found[found] = sorted_keys[pos[found]] == wanted[found]
    if not found.all():
        k = int(np.argmin(found))
        raise ValueError(f"{int((~found).sum())} edges have no interaction row, e.g. user {int(edge_user[k])} "
                         f"item {int(edge_item[k])}")
    return np.asarray(is_noise, bool)[order[pos]]


def chance_per_user(edge_user: np.ndarray, pruned: np.ndarray, noise: np.ndarray, num_users: int) -> dict[str, float]:
    """Expected precision / recall of pruning, for each user, as many of its edges as the model
    pruned, chosen uniformly at random: E[hits] = Σ_u pruned_u · noise_u / deg_u."""
    deg = np.bincount(edge_user, minlength=num_users).astype(np.float64)
    p = np.bincount(edge_user, weights=pruned.astype(np.float64), minlength=num_users)
    q = np.bincount(edge_user, weights=noise.astype(np.float64), minlength=num_users)
    hits = float((p * np.divide(q, deg, out=np.zeros_like(q), where=deg > 0)).sum())
    return {"precision": hits / max(float(pruned.sum()), 1.0), "recall": hits / max(float(noise.sum()), 1.0)}


def _truth_items(run: RestoredRun) -> dict[str, np.ndarray]:
    try:
        table = run.dataset.load_truth("items")
    except DatasetError as err:
        raise RestoreError(f"the run's dataset has no simulator truth ({err}): causal checks need a dataset made "
                           "by `python -m data_loaders.prepare --from synthetic`") from None
    ids = table.column("item_id").to_numpy()
    n = run.dataset.manifest.num_items
    out = {}
    for name in ("confounder", "fine_confounder"):
        if name in table.column_names:
            values = np.full(n, -1, dtype=np.int64)
            values[ids] = table.column(name).to_numpy()
            out[name] = values
    return out


@torch.no_grad()
def code_checks(run: RestoredRun) -> dict[str, Any]:
    """NMI of the model's codes of all items with the planted confounders."""
    model = run.model
    if not model.cfg.backdoor.enabled:
        return {"note": "back-door off: no codebook"}
    truth = _truth_items(run)
    r = model.represent()
    codes = [c.cpu().numpy() for c in model.backdoor.assign(r.confounder)]
    levels = dict(zip(model.backdoor.level_names(), codes))
    out: dict[str, Any] = {"num_items": int(codes[0].size),
                           "codes_used": {name: int(np.unique(c).size) for name, c in levels.items()},
                           "num_codes": {name: vq.num_codes for name, vq in zip(levels, model.backdoor.levels)}}
    if "confounder" in truth:
        out["truth_coarse_values"] = int(np.unique(truth["confounder"]).size)
        out["nmi_coarse"] = normalized_mutual_info(levels["coarse"], truth["confounder"])
    if "fine_confounder" in truth:
        out["truth_fine_values"] = int(np.unique(truth["fine_confounder"]).size)
        if "fine" in levels:
            out["nmi_fine"] = normalized_mutual_info(levels["fine"], truth["fine_confounder"])
            pair = levels["coarse"].astype(np.int64) * model.backdoor.levels[1].num_codes + levels["fine"]
            out["nmi_pair"] = normalized_mutual_info(pair, truth["fine_confounder"])
        out["nmi_coarse_vs_fine_truth"] = normalized_mutual_info(levels["coarse"], truth["fine_confounder"])
    return out


def pruning_checks(run: RestoredRun) -> dict[str, Any]:
    """The front-door's kept mask vs the planted noise edges, with the chance baselines."""
    fd = run.model.frontdoor
    if not fd.cfg.enabled or not fd.cfg.topology_reconstruction:
        return {"note": "front-door or its topology reconstruction off: nothing is pruned"}
    try:
        rows = run.dataset.load_interactions(splits=[Split.TRAIN], columns=("user_id", "item_id", "is_noise"))
    except DatasetError as err:
        raise RestoreError(f"the run's dataset has no planted noise edges ({err})") from None
    edge_user, edge_item = fd.edge_user.cpu().numpy(), fd.edge_item.cpu().numpy()
    noise = noise_in_edge_order(rows["user_id"], rows["item_id"], rows["is_noise"], edge_user, edge_item,
                                run.dataset.manifest.num_items)
    kept = fd.kept.cpu().numpy().astype(bool)
    last = int(fd.last_refresh)
    out: dict[str, Any] = {"edges": int(kept.size), "noise_edges": int(noise.sum()),
                           "noise_fraction": float(noise.mean()) if noise.size else 0.0,
                           "last_refresh_epoch": last + 1 if last >= 0 else None,
                           **pruning_metrics(torch.from_numpy(kept), torch.from_numpy(noise))}
    out["chance"] = {"precision": out["noise_fraction"], "recall": out["pruned_fraction"]}
    out["chance_per_user"] = chance_per_user(edge_user, ~kept, noise, fd.num_users)
    out["precision_lift"] = out["precision"] / out["noise_fraction"] if out["noise_fraction"] > 0 else None
    if last < 0:
        out["note"] = "the subgraph was never refreshed before this checkpoint: every edge is kept"
    return out


def causal_checks(run: RestoredRun) -> dict[str, Any]:
    if not isinstance(run.model, CausalRec):
        raise RestoreError(f"causal checks need model.name=causal (run {run.run_dir}: model.name={run.cfg.model.name})")
    return {"run": run.run_dir, "data": run.cfg.data.url, "seed": run.cfg.run.seed,
            "checkpoint_epoch": run.state.epoch, "best_epoch": run.metrics.get("best_epoch"),
            "unbiased_test": run.metrics.get("best_unbiased_test") or {}, "test": run.metrics.get("best_test") or {},
            "codes": code_checks(run), "pruning": pruning_checks(run)}


def _num(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) and x == x else "—"


def render(rep: dict[str, Any]) -> str:
    codes, prune = rep["codes"], rep["pruning"]
    lines = [f"### Causal checks: {rep['run']} (checkpoint after epoch {rep['checkpoint_epoch']})", "",
             "| check | value |", "|---|---|",
             f"| unbiased_test Recall@20 | {_num(rep['unbiased_test'].get('recall@20'))} |",
             f"| test Recall@20 | {_num(rep['test'].get('recall@20'))} |"]
    if "nmi_coarse" in codes:
        lines.append(f"| NMI coarse codes vs confounder ({codes['codes_used']['coarse']} of "
                     f"{codes['num_codes']['coarse']} codes used, {codes['truth_coarse_values']} true values) "
                     f"| {_num(codes['nmi_coarse'])} |")
    for key, what in (("nmi_fine", "fine codes"), ("nmi_pair", "(coarse, fine) pairs")):
        if key in codes:
            lines.append(f"| NMI {what} vs fine confounder ({codes['truth_fine_values']} true values) | {_num(codes[key])} |")
    if "precision" in prune:
        lines += [f"| pruned fraction of train edges | {_num(prune['pruned_fraction'])} |",
                  f"| noise fraction of train edges | {_num(prune['noise_fraction'])} |",
                  f"| pruning precision (pruned ⇒ noise) / chance / chance per user | {_num(prune['precision'])} / "
                  f"{_num(prune['chance']['precision'])} / {_num(prune['chance_per_user']['precision'])} |",
                  f"| pruning recall (noise ⇒ pruned) / chance / chance per user | {_num(prune['recall'])} / "
                  f"{_num(prune['chance']['recall'])} / {_num(prune['chance_per_user']['recall'])} |"]
    notes = [f"{what}: {part['note']}" for what, part in (("codes", codes), ("pruning", prune)) if "note" in part]
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory of a causal run on a simulator dataset")
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON to this path (fsspec URL)")
    parser.add_argument("--data", help="dataset URL, when it moved since training (default: the config's data.url)")
    args = parser.parse_args(argv)
    try:
        rep = causal_checks(restore_run(args.run, args.data))
    except RestoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(rep))
    if args.json:
        import fsspec

        with fsspec.open(args.json, "w") as f:
            json.dump(rep, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
