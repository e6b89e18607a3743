"""Training-step cost of full-graph vs sampled LightGCN, and the sampler alone at catalog scale.

    .venv/bin/python benchmarks/sampled_step.py [--data data/baby] [--steps 30] [--fanouts 10,10 20,20]
                                                [--catalog]

One process, one thread, unsharded tables (what one worker does at world size 1), dense Adam.
The modes are interleaved step by step over the same BPR batches, so other load on the machine
slows them alike; both wall and process CPU time are reported (median per step). Columns: the
nodes whose rows the step looks up, the edges it propagates (per layer, summed) and the step's
time split into sampling and the rest (lookup, propagation, loss, backward, optimizer step).
`--catalog` also times the sampler alone on a synthetic 1M-user, 1M-item, 20M-edge graph
(Pareto item popularity). Prints a table and records it in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import machine, record_section  # noqa: E402
from data_loaders.format import Split  # noqa: E402
from data_loaders.graph import CSR, interaction_csr, lightgcn_adjacency  # noqa: E402
from data_loaders.neighbors import NeighborGraph, NeighborSampler, sampling_rng  # noqa: E402
from data_loaders.sampler import BPRSampler  # noqa: E402
from data_loaders.stream import open_dataset  # noqa: E402
from models.embeddings import IdTables  # noqa: E402
from models.lightgcn import LightGCN, LightGCNConfig  # noqa: E402


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def step_costs(data: str, fanout_sets: list[list[int]], steps: int, batch: int = 2048) -> list[str]:
    train = interaction_csr(open_dataset(data), Split.TRAIN)
    users, items = train.num_rows, train.num_cols
    adjacency = lightgcn_adjacency(train)
    modes: dict[str, LightGCN] = {}
    for fanouts in [None] + fanout_sets:
        torch.manual_seed(0)
        tables = IdTables(users, items, 64)
        cfg = LightGCNConfig("full") if fanouts is None else LightGCNConfig("sampled", fanouts)
        name = "full" if fanouts is None else f"sampled {fanouts}"
        modes[name] = LightGCN(users, items, 64, 2, adjacency, tables, 1e-4, cfg=cfg, train=train)
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in modes.items()}
    stats: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": [], "sample": [], "nodes": [], "edges": []}
                                                for n in modes}
    for i, b in enumerate(BPRSampler(train, batch_size=batch).epoch(0)):
        if i == steps + 2:
            break
        u, p, q = (torch.as_tensor(x) for x in (b.users, b.positives, b.negatives))
        for name, model in modes.items():
            w0, c0 = _clock()
            if model.graph_mode == "sampled":
                sub = model.sample(u, p, q)
                model._step -= 1  # the forward below draws the same subgraph again: time it apart
                w1, _ = _clock()
                nodes, edges, sample_s = len(sub.nodes), sum(len(h[0]) for h in sub.hops), w1 - w0
            else:
                nodes, edges, sample_s = users + items, model.num_layers * adjacency._nnz(), 0.0
            w0, c0 = _clock()
            out = model(u, p, q)
            optimizers[name].zero_grad()
            out["loss"].backward()
            optimizers[name].step()
            w1, c1 = _clock()
            if i >= 2:  # warm-up
                s = stats[name]
                s["wall"].append(w1 - w0)
                s["cpu"].append(c1 - c0)
                s["sample"].append(sample_s)
                s["nodes"].append(nodes)
                s["edges"].append(edges)
    steps_per_epoch = -(-train.nnz // batch)
    rows = []
    for name, s in stats.items():
        med = {k: statistics.median(v) for k, v in s.items()}
        rows.append(f"| {name} | {med['nodes']:,.0f} | {med['edges']:,.0f} | {1000 * med['wall']:.0f} | "
                    f"{1000 * med['sample']:.0f} | {1000 * med['cpu']:.0f} | {steps_per_epoch * med['wall']:.1f} |")
        print(rows[-1], flush=True)
    return rows


def catalog(fanout_sets: list[list[int]], steps: int = 5, batch: int = 2048) -> list[str]:
    rng = np.random.default_rng(0)
    n_users = n_items = 1_000_000
    n_edges = 20_000_000
    users = rng.integers(0, n_users, n_edges)
    items = np.minimum((rng.pareto(1.2, n_edges) * 2000).astype(np.int64), n_items - 1)
    started = time.perf_counter()
    graph = NeighborGraph.from_csr(CSR.from_pairs(users, items, n_users, n_items))
    build = time.perf_counter() - started
    size = (graph.indptr.nbytes + graph.indices.nbytes + graph.inv_sqrt_degree.nbytes) / 2**20
    rows = []
    for fanouts in fanout_sets:
        sampler = NeighborSampler(graph, fanouts)
        times, cpu, nodes, edges = [], [], [], []
        for step in range(steps):
            seeds = np.concatenate([rng.integers(0, n_users, batch), n_users + items[rng.integers(0, n_edges, batch)],
                                    n_users + rng.integers(0, n_items, batch)])
            t, c = _clock()
            sub = sampler.sample(seeds, sampling_rng(0, 0, step, 0))
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            nodes.append(len(sub.nodes))
            edges.append(sum(len(h[0]) for h in sub.hops))
        rows.append(f"| {fanouts} | {statistics.median(nodes):,.0f} | {statistics.median(edges):,.0f} | "
                    f"{1000 * statistics.median(times):.0f} | {1000 * statistics.median(cpu):.0f} | {build:.1f} | {size:.0f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/baby")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--fanouts", nargs="+", default=["10,10", "20,20"])
    parser.add_argument("--catalog", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fanout_sets = [[int(f) for f in text.split(",")] for text in args.fanouts]
    rows = step_costs(args.data, fanout_sets, args.steps)
    command = (f"`.venv/bin/python benchmarks/sampled_step.py --data {args.data} --steps {args.steps} "
               f"--fanouts {' '.join(args.fanouts)}{' --catalog' if args.catalog else ''}`")
    lines = [
        f"## Full-graph vs sampled LightGCN step ({Path(args.data).name})",
        "",
        f"{command} on {machine()}. One thread, unsharded tables, dense Adam, batch 2048, 64-d,",
        f"2 layers; the modes interleaved over the same {args.steps} batches (after 2 warm-up steps), medians.",
        "Wall time is what the machine's other load left; CPU time (this process) is the cost.",
        "",
        "| mode | rows looked up | edges propagated | ms / step (wall) | of which sampling | ms / step (CPU) | s / epoch (wall, est.) |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    if args.catalog:
        lines += [
            "",
            "The sampler alone on a synthetic 1M-user, 1M-item, 20M-edge graph (batch 2048 triples):",
            "",
            "| fanouts | nodes touched | edges sampled | ms / batch (wall) | ms / batch (CPU) | graph build (s, wall) | graph (MiB) |",
            "|---|---|---|---|---|---|---|",
            *catalog(fanout_sets),
        ]
    table = "\n".join(lines)
    print(table)
    record_section(f"sampled_step-{Path(args.data).name}", table)


if __name__ == "__main__":
    main()
