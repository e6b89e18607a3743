"""SimGCL on a cimrec dataset, written from the paper alone: a check that shares no model code with cimrec.

Why: `model.causal.id_contrast` (SimGCL, Yu et al., SIGIR 2022) lowered valid Recall@20 on TikTok,
on the causal model and on its ID backbone alone (docs/RESULTS.md, "TikTok: a SimGCL term on the
ID rows"), and three checks could not say whether that is the setting or a defect of cimrec's
implementation. This script is a second, independent implementation in plain torch: one
`nn.Parameter` table, LightGCN's symmetric normalised propagation, BPR on one uniform negative, and
SimGCL's term (two propagations with eps * sign(x) * unit-random noise added to every layer,
InfoNCE between them over the batch's distinct users and positive items, temperature 0.2), scored
with the mean of layers 1..L as SimGCL does (`--layers-from 0` adds the ego layer, as LightGCN and
cimrec do). Only the dataset reader and the evaluator (the metric definitions every table uses)
come from cimrec. If it shows the same fall, the fall belongs to the setting.

    .venv/bin/python experiments/simgcl_reference.py --data data/tiktok --weight 0.1 --epochs 100

prints one line per epoch (BPR, the weighted InfoNCE, valid Recall@20 / NDCG@20) and, at the end,
the best valid epoch; `--json FILE` also writes that history.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data_loaders.format import Split  # noqa: E402
from data_loaders.graph import CSR, interaction_csr  # noqa: E402
from data_loaders.stream import open_dataset  # noqa: E402
from trainer.evaluate import evaluate  # noqa: E402


def normalised_adjacency(train: CSR) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the user-item bipartite graph, users first, as a sparse CSR tensor."""
    users = np.repeat(np.arange(train.num_rows), np.diff(train.indptr))
    items = train.indices + train.num_rows
    src, dst = np.concatenate([users, items]), np.concatenate([items, users])
    degree = np.bincount(src, minlength=train.num_rows + train.num_cols).astype(np.float32)
    weight = 1.0 / np.sqrt(degree[src] * degree[dst])
    n = train.num_rows + train.num_cols
    coo = torch.sparse_coo_tensor(torch.from_numpy(np.stack([dst, src])), torch.from_numpy(weight), (n, n),
                                  check_invariants=False)
    with warnings.catch_warnings():  # "CSR support is in beta": CSR @ dense and its backward are all we use
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return coo.coalesce().to_sparse_csr()


def propagate(adjacency: torch.Tensor, ego: torch.Tensor, layers: int, eps: float, layers_from: int) -> torch.Tensor:
    """Mean of layers `layers_from`..L, each layer A x plus SimGCL's noise when eps > 0."""
    x, kept = ego, [ego] if layers_from == 0 else []
    for _ in range(layers):
        x = torch.sparse.mm(adjacency, x)
        if eps > 0:
            x = x + eps * torch.sign(x) * F.normalize(torch.rand_like(x), dim=-1)
        kept.append(x)
    return torch.stack(kept).mean(0)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0]))


def train(args: argparse.Namespace) -> list[dict[str, float]]:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    dataset = open_dataset(args.data)
    train_csr, valid_csr = interaction_csr(dataset, Split.TRAIN), interaction_csr(dataset, Split.VALID)
    num_users, num_items = train_csr.num_rows, train_csr.num_cols
    adjacency = normalised_adjacency(train_csr)
    table = torch.nn.Parameter(torch.empty(num_users + num_items, args.dim))
    torch.nn.init.xavier_uniform_(table.data[:num_users])  # SimGCL's per-table Xavier initialisation
    torch.nn.init.xavier_uniform_(table.data[num_users:])
    optimizer = torch.optim.Adam([table], lr=args.lr)
    pair_users = np.repeat(np.arange(num_users), np.diff(train_csr.indptr))
    history = []
    for epoch in range(1, args.epochs + 1):
        started, sums, steps = time.perf_counter(), {"bpr": 0.0, "contrast": 0.0}, 0
        order = rng.permutation(pair_users.size)
        for start in range(0, order.size, args.batch):
            idx = order[start:start + args.batch]
            users = torch.from_numpy(pair_users[idx])
            pos = torch.from_numpy(train_csr.indices[idx])
            neg = torch.from_numpy(rng.integers(0, num_items, idx.size))
            x = propagate(adjacency, table, args.layers, 0.0, args.layers_from)
            u, p, n = x[users], x[num_users + pos], x[num_users + neg]
            bpr = -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1)).mean()
            reg = (table[users].norm() + table[num_users + pos].norm() + table[num_users + neg].norm()) / idx.size
            contrast = torch.zeros(())
            if args.weight:
                a = propagate(adjacency, table, args.layers, args.eps, args.layers_from)
                b = propagate(adjacency, table, args.layers, args.eps, args.layers_from)
                nodes_u, nodes_i = torch.unique(users), torch.unique(pos) + num_users
                contrast = args.weight * (info_nce(a[nodes_u], b[nodes_u], args.temperature)
                                          + info_nce(a[nodes_i], b[nodes_i], args.temperature))
            optimizer.zero_grad()
            (bpr + args.reg * reg + contrast).backward()
            optimizer.step()
            sums["bpr"] += float(bpr.detach())
            sums["contrast"] += float(contrast.detach())
            steps += 1
        with torch.no_grad():
            x = propagate(adjacency, table, args.layers, 0.0, args.layers_from)
        metrics = evaluate(x[:num_users], x[num_users:], valid_csr, [train_csr], ks=(20,)).metrics
        row = {"epoch": epoch, "bpr": sums["bpr"] / steps, "contrast": sums["contrast"] / steps,
               "valid_recall@20": metrics["recall@20"], "valid_ndcg@20": metrics["ndcg@20"]}
        history.append(row)
        print(f"epoch {epoch}: bpr {row['bpr']:.4f}, contrast {row['contrast']:.4f}, valid R@20 "
              f"{row['valid_recall@20']:.4f} N@20 {row['valid_ndcg@20']:.4f} ({time.perf_counter() - started:.1f}s)",
              flush=True)
    return history


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="dataset URL (cimrec format), e.g. data/tiktok")
    parser.add_argument("--weight", type=float, default=0.1, help="SimGCL's lambda; 0 = plain LightGCN")
    parser.add_argument("--eps", type=float, default=0.1, help="SimGCL's noise magnitude")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--layers-from", type=int, choices=(0, 1), default=1,
                        help="1: score with layers 1..L (SimGCL); 0: with 0..L (LightGCN, cimrec)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--reg", type=float, default=1e-4, help="L2 weight (MMRec/SimGCL form: norms / batch)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--json", help="also write the per-epoch history here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:  # only when asked: the tests call main() in pytest's process
        torch.set_num_threads(args.threads)
    history = train(args)
    best = max(history, key=lambda r: r["valid_recall@20"])
    print(f"best valid R@20 {best['valid_recall@20']:.4f} (N@20 {best['valid_ndcg@20']:.4f}) at epoch "
          f"{best['epoch']} of {len(history)}; weight {args.weight}, eps {args.eps}, layers from {args.layers_from}")
    if args.json:
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps({"args": vars(args), "history": history}, indent=1))
        tmp.replace(args.json)  # never a half-written file under the final name


if __name__ == "__main__":
    main()
