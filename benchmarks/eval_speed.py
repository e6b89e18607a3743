"""Full-ranking evaluation speed: seconds per 10,000 users at 10k / 100k / 1M items, and all Baby users.

    .venv/bin/python benchmarks/eval_speed.py [--items 10000,100000,1000000] [--users 10000]
                                              [--baby data/baby] [--threads 0]

`trainer/evaluate.py:evaluate` called exactly as the trainer's Evaluator calls it (training items
masked, ks and chunk sizes from the default config, one process: rank 0 of world size 1), on
random 64-d embeddings. Per catalog size: `--users` users, each with 10 random training items
(masked) and 2 held-out ones; each size runs in a fresh subprocess so that its peak RSS
(ru_maxrss) is its own. The Baby row uses the real train / valid split of data/baby (every valid
user, training items masked, as a valid evaluation of the trainer) with random embeddings, median
of 3 runs after a warm-up; it is skipped when the dataset is absent. Both wall and process CPU
seconds are given: on a loaded machine the CPU figure is the steadier one. Prints a table and
records it in docs/BENCHMARKS.md (section eval_speed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.record import machine, record_section  # noqa: E402
from data_loaders.graph import CSR  # noqa: E402
from trainer.config import Config  # noqa: E402
from trainer.evaluate import evaluate  # noqa: E402

DIM = 64


def _evaluate(user_emb: torch.Tensor, item_emb: torch.Tensor, targets: CSR, train: CSR) -> tuple[float, float, int]:
    """(wall s, CPU s, users) of one evaluation, with the trainer's default settings."""
    cfg = Config().eval
    w0, c0 = time.perf_counter(), time.process_time()
    result = evaluate(user_emb, item_emb, targets, [train], ks=tuple(cfg.ks), user_chunk=cfg.user_chunk,
                      item_chunk=cfg.item_chunk, rank=0, world_size=1, reduce=True)
    return time.perf_counter() - w0, time.process_time() - c0, result.num_users


def _peak_rss_mb() -> float:
    """VmHWM in MiB (getrusage's ru_maxrss survives exec: it could be the parent's)."""
    try:
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_size(num_items: int, num_users: int, seed: int = 0) -> dict:
    """Random embeddings and interactions for `num_users` users over `num_items` items, timed."""
    rng = np.random.default_rng(seed)
    per_user = 12  # 10 train + 2 held out, distinct per user
    cols = np.stack([rng.choice(num_items, per_user, replace=False) for _ in range(min(num_users, 64))])
    # Distinct items per user without a per-user choice(): random offsets of a per-user base pattern.
    shift = rng.integers(0, num_items, num_users)[:, None]
    items = (cols[np.arange(num_users) % len(cols)] + shift) % num_items
    rows = np.repeat(np.arange(num_users), per_user).reshape(num_users, per_user)
    train = CSR.from_pairs(rows[:, :10].ravel(), items[:, :10].ravel(), num_users, num_items)
    held = CSR.from_pairs(rows[:, 10:].ravel(), items[:, 10:].ravel(), num_users, num_items)
    g = torch.Generator().manual_seed(seed)
    user_emb, item_emb = torch.randn(num_users, DIM, generator=g), torch.randn(num_items, DIM, generator=g)
    wall, cpu, users = _evaluate(user_emb, item_emb, held, train)
    return {"items": num_items, "users": users, "wall": wall, "cpu": cpu, "rss": _peak_rss_mb(),
            "threads": torch.get_num_threads()}


def baby(url: str, repeats: int = 3) -> dict:
    from data_loaders.format import Split
    from data_loaders.graph import interaction_csrs
    from data_loaders.stream import open_dataset

    splits = interaction_csrs(open_dataset(url), (Split.TRAIN, Split.VALID))
    train, valid = splits[Split.TRAIN], splits[Split.VALID]
    g = torch.Generator().manual_seed(0)
    user_emb = torch.randn(train.num_rows, DIM, generator=g)
    item_emb = torch.randn(train.num_cols, DIM, generator=g)
    _evaluate(user_emb, item_emb, valid, train)  # warm-up: allocator, thread pool
    runs = [_evaluate(user_emb, item_emb, valid, train) for _ in range(repeats)]
    return {"items": train.num_cols, "users": runs[0][2], "wall": statistics.median(r[0] for r in runs),
            "cpu": statistics.median(r[1] for r in runs), "rss": _peak_rss_mb(), "threads": torch.get_num_threads()}


def knn(num_items: int, dim: int = 64, k: int = 10) -> dict:
    """FREEDOM's frozen kNN graph of one modality (models/knn.py, the model's default chunks), timed."""
    from models.freedom import FreedomConfig
    from models.knn import knn_indices

    cfg = FreedomConfig()
    features = torch.randn(num_items, dim, generator=torch.Generator().manual_seed(0))
    w0, c0 = time.perf_counter(), time.process_time()
    knn_indices(features, k, row_chunk=cfg.knn_row_chunk, col_chunk=cfg.knn_col_chunk)
    return {"items": num_items, "wall": time.perf_counter() - w0, "cpu": time.process_time() - c0,
            "rss": _peak_rss_mb()}


def _in_subprocess(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", default="10000,100000,1000000", help="catalog sizes, comma-separated")
    parser.add_argument("--users", type=int, default=10000, help="users evaluated per catalog size")
    parser.add_argument("--baby", default="data/baby", help="the Baby dataset (skipped if absent; '' to skip)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)")
    parser.add_argument("--knn-items", default="5000,10000,20000",
                        help="also time FREEDOM's exact kNN graph at these catalog sizes ('' to skip)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one size, JSON on stdout
    parser.add_argument("--one-baby", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one-knn", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one is not None:
        print(json.dumps(one_size(args.one, args.users)))
        return
    if args.one_baby:
        print(json.dumps(baby(args.baby)))
        return
    if args.one_knn is not None:
        print(json.dumps(knn(args.one_knn)))
        return

    passed = [f"--users={args.users}"] + ([f"--threads={args.threads}"] if args.threads else [])
    threads = f"{args.threads} torch thread(s)" if args.threads else f"torch's default threads ({torch.get_num_threads()})"
    rows = []
    for n in (int(x) for x in args.items.split(",") if x):
        r = _in_subprocess([f"--one={n}", *passed])
        per10k = 1e4 / r["users"]
        rows.append(f"| {n:,} random | {r['users']:,} | {r['wall'] * per10k:.2f} | {r['cpu'] * per10k:.2f} | "
                    f"{r['wall']:.2f} | {r['rss']:.0f} |")
        print(rows[-1], flush=True)
    baby_url = ROOT / args.baby if args.baby and not os.path.isabs(args.baby) else Path(args.baby or "")
    baby_row = None
    if args.baby and (baby_url / "manifest.json").exists():
        r = _in_subprocess(["--one-baby", f"--baby={baby_url}", *passed])
        per10k = 1e4 / r["users"]
        baby_row = r
        rows.append(f"| Baby ({r['items']:,} items), all valid users | {r['users']:,} | {r['wall'] * per10k:.2f} | "
                    f"{r['cpu'] * per10k:.2f} | **{r['wall']:.2f}** | {r['rss']:.0f} |")
        print(rows[-1], flush=True)
    cfg = Config().eval
    table = "\n".join([
        "## Full-ranking evaluation speed",
        "",
        f"`.venv/bin/python benchmarks/eval_speed.py --items {args.items} --users {args.users}"
        + (f" --threads {args.threads}" if args.threads else "") + "`",
        f"on {machine()}. `trainer/evaluate.py:evaluate` as the trainer calls it: one process, {threads},",
        f"64-d random embeddings, every item ranked, training items masked, ks {list(cfg.ks)}, "
        f"user_chunk {cfg.user_chunk}, item_chunk {cfg.item_chunk};",
        "each row in its own process (peak RSS = that process's, embeddings and CSRs included). Baby: the",
        "real train/valid split, every valid user, median of 3 after a warm-up (target: under 0.5 s).",
        "",
        "| items | users evaluated | s / 10k users (wall) | s / 10k users (CPU) | s total (wall) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
        *rows,
    ])
    if baby_row is not None:
        verdict = "meets" if baby_row["wall"] < 0.5 else "misses"
        table += (f"\n\nAll Baby valid users in {baby_row['wall']:.2f} s wall ({baby_row['cpu']:.2f} s CPU): "
                  f"{verdict} the 0.5 s target at this load.")
    print(table)
    if not args.no_record:
        record_section("eval_speed", table)
    knn_sizes = [int(x) for x in args.knn_items.split(",") if x]
    if knn_sizes:
        knn_rows, last = [], None
        for n in knn_sizes:
            last = _in_subprocess([f"--one-knn={n}", *passed])
            knn_rows.append(f"| {n:,} | {last['wall']:.2f} | {last['cpu']:.2f} | {last['rss']:.0f} |")
            print(knn_rows[-1], flush=True)
        scale_1m = (1e6 / last["items"]) ** 2
        from models.freedom import FreedomConfig
        fc = FreedomConfig()
        knn_table = "\n".join([
            "## FREEDOM's exact kNN graph (models/knn.py): the one quadratic-in-items cost",
            "",
            f"`.venv/bin/python benchmarks/eval_speed.py --knn-items {args.knn_items}` (same run as above)",
            f"on {machine()}. `knn_indices` of one 64-d modality, k {fc.knn_k}, the model's chunks",
            f"(row_chunk {fc.knn_row_chunk}, col_chunk {fc.knn_col_chunk}), {threads}; each size in its own process.",
            "",
            "| items | s (wall) | s (CPU) | peak RSS (MiB) |",
            "|---|---|---|---|",
            *knn_rows,
            "",
            "Time is O(I^2 d) whatever the chunks (they bound memory to row_chunk x col_chunk floats, not work):",
            f"scaling the largest row by (1M / {last['items']:,})^2 gives about {last['wall'] * scale_1m / 3600:.1f} h wall "
            f"({last['cpu'] * scale_1m / 3600:.1f} h CPU) per modality at 1M items on this machine, once per run.",
        ])
        print(knn_table)
        if not args.no_record:
            record_section("knn_speed", knn_table)


if __name__ == "__main__":
    main()
