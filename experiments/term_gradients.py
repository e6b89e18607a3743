"""Which loss term moves the ID rows: per-term gradients on the ID tables at a run's checkpoint.

    .venv/bin/python experiments/term_gradients.py --run RUN_DIR [--epoch E] [--batch 8192] [--seed 0]

Why: with `contrast.view: mediator` the causal model stays at the popularity level on TikTok
although its BPR loss falls (docs/RESULTS.md, "TikTok: why the mediator view fails"). The
contrastive term then reaches the ID rows through the mediator's propagation, where the content
view never does. This script restores the checkpoint written after epoch E (default: the best),
draws one training batch (uniform training edges, one uniform negative each; fixed seed), runs
the model's training forward and prints, for each loss term and each ID table, the gradient's
norm, its cosine with the BPR term's gradient (negative: the term pulls the rows against the
ranking), and its radial part sum_rows <g_r, e_r> (negative: a gradient step grows the rows).
A diagnostic: nothing is selected on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data_loaders.format import Split  # noqa: E402
from trainer.restore import RestoreError, restore_run  # noqa: E402

TERMS = ("bpr", "reg", "contrast", "topo", "diffusion", "vq")


def term_gradients(out: dict[str, torch.Tensor], params: dict[str, torch.Tensor],
                   terms: tuple[str, ...] = TERMS) -> list[dict[str, float | str]]:
    """One row per (term, table): gradient norm, cosine with the first term's gradient, radial part.

    Terms absent from `out` or without a gradient path to a table are skipped (a zero gradient there)."""
    names, tensors = list(params), list(params.values())
    grads: dict[str, list[torch.Tensor]] = {}
    for term in terms:
        value = out.get(term)
        if value is None or not value.requires_grad:
            continue
        got = torch.autograd.grad(value, tensors, retain_graph=True, allow_unused=True)
        grads[term] = [torch.zeros_like(p) if g is None else g for g, p in zip(got, tensors)]
    if not grads:
        raise ValueError(f"none of the terms {terms} has a gradient")
    first = next(iter(grads))
    rows: list[dict[str, float | str]] = []
    for term, gs in grads.items():
        for name, p, g, g0 in zip(names, tensors, gs, grads[first]):
            rows.append({"term": term, "table": name, "value": float(out[term].detach()), "norm": float(g.norm()),
                         f"cos_{first}": float(F.cosine_similarity(g.flatten(), g0.flatten(), 0, eps=1e-30)),
                         "radial": float((g * p.detach()).sum())})
    return rows


def id_tables(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The user and item ID tables (the backbone's EmbeddingBagCollection weights), by table name."""
    found = {name.split(".")[-2]: p for name, p in model.named_parameters()
             if ".embedding_bags." in name and name.split(".")[-2] in ("user", "item")}
    if set(found) != {"user", "item"}:
        raise ValueError(f"no user/item ID tables among the model's parameters (found {sorted(found)})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, metavar="RUN_DIR")
    parser.add_argument("--epoch", type=int, help="the checkpoint written after this epoch (default: the best)")
    parser.add_argument("--batch", type=int, default=8192, help="training triples (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be positive, got {args.batch}")
    try:
        run = restore_run(args.run, epoch=args.epoch)
        params = id_tables(run.model)
    except (RestoreError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    train = run.splits[Split.TRAIN]
    rng = np.random.default_rng(args.seed)
    edges = rng.integers(0, train.nnz, args.batch)
    users = torch.from_numpy(train.row_ids()[edges])
    pos = torch.from_numpy(train.indices[edges].astype(np.int64))
    neg = torch.from_numpy(rng.integers(0, train.num_cols, args.batch))
    run.model.train()  # the training forward (its losses); the restored weights are not written back
    torch.manual_seed(args.seed)
    rows = term_gradients(run.model(users, pos, neg), params)
    print(f"{args.run} after epoch {run.state.epoch}, {args.batch} triples, seed {args.seed}")
    cos_key = next(k for k in rows[0] if k.startswith("cos_"))
    print(f"| term | table | value | gradient norm | {cos_key.replace('_', ' with ')} | radial part |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['term']} | {r['table']} | {r['value']:.4f} | {r['norm']:.2e} | {r[cos_key]:.3f} | {r['radial']:.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
