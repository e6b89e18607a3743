"""Profile training steps of a configured model with torch.profiler: what dominates a step.

    .venv/bin/python benchmarks/profile_step.py [--config configs/tiktok_lightgcn.yaml configs/tiktok_causal.yaml]
                                                [--steps 5] [--warmup 2] [--top 12] [--threads 1] [--by-shape]

Builds the model in-process exactly like trainer/loop.py does (same dataset reading,
`trainer.build.build_from_config`, `trainer.sharding.shard_model` and `trainer.dense_engine.build_stepper`)
inside a world-size-1 gloo process group, runs the per-epoch `start_epoch` once (as the loop does before
the first step; not timed), then times `--steps` steps (forward, zero_grad, backward, step on the
sampler's batches) without the profiler, and profiles as many more with torch.profiler (CPU).
Prints ms per step (wall and process CPU) and the top ops by self CPU time, and records them in
docs/BENCHMARKS.md (section profile-<config names>).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from benchmarks.record import machine, record_section  # noqa: E402
from data_loaders.format import Split  # noqa: E402
from data_loaders.graph import interaction_csrs  # noqa: E402
from data_loaders.sampler import BPRSampler  # noqa: E402
from data_loaders.stream import open_dataset  # noqa: E402
from trainer.build import build_from_config  # noqa: E402
from trainer.config import load_config  # noqa: E402
from trainer.dense_engine import build_stepper  # noqa: E402
from trainer.sharding import shard_model  # noqa: E402


def build(cfg):
    """(stepper, inner model, sampler) as trainer/loop.py builds them at world size 1."""
    device = torch.device("cpu")
    url = cfg.data.url if os.path.isabs(cfg.data.url) else str(ROOT / cfg.data.url)
    dataset = open_dataset(url, storage_options=cfg.data.storage_options or None)
    splits = interaction_csrs(dataset, (Split.TRAIN,))
    train = splits[Split.TRAIN]
    model = build_from_config(cfg, dataset, splits, device)  # seeds torch with cfg.run.seed
    sharded = shard_model(model, device=device, sharding=cfg.train.sharding, kernel=cfg.train.embedding_kernel,
                          optimizer=cfg.train.optimizer, lr=cfg.train.learning_rate,
                          weight_decay=cfg.train.weight_decay, world_size=1,
                          dense_data_parallel=cfg.train.dense_engine == "torch")
    stepper = build_stepper(sharded, engine=cfg.train.dense_engine, zero_stage=cfg.train.zero_stage,
                            gradient_clipping=cfg.train.gradient_clipping, optimizer=cfg.train.optimizer,
                            lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay,
                            micro_batch_size=cfg.train.batch_size, device=device, world_size=1)
    sampler = BPRSampler(train, batch_size=cfg.train.batch_size, rank=0, world_size=1, seed=cfg.run.seed)
    return stepper, sharded.model.module, sampler, train


def _batches(sampler):
    """The sampler's batches, epoch after epoch: a large batch leaves fewer steps per epoch than are timed."""
    epoch = 0
    while True:
        yield from sampler.epoch(epoch)
        epoch += 1


def _step(stepper, batch) -> None:
    out = stepper.forward(torch.as_tensor(batch.users), torch.as_tensor(batch.positives),
                          torch.as_tensor(batch.negatives))
    stepper.zero_grad()
    stepper.backward(out["loss"])
    stepper.step()


def profile_config(path: str, steps: int, warmup: int, top: int, by_shape: bool = False) -> tuple[str, list[str]]:
    cfg = load_config(str(ROOT / path) if not os.path.isabs(path) else path)
    stepper, inner, sampler, train = build(cfg)
    inner.train()
    if hasattr(inner, "start_epoch"):
        inner.start_epoch(0)
    batches = _batches(sampler)
    for _ in range(warmup):
        _step(stepper, next(batches))
    walls, cpus = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        _step(stepper, next(batches))
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=by_shape) as prof:
        for _ in range(steps):
            _step(stepper, next(batches))
    # By shape, one op's calls split by input shapes: which matmul (projection, denoiser, propagation) costs.
    events = prof.key_averages(group_by_input_shape=by_shape)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    print(f"\n== {path}: {cfg.model.name}, {train.num_rows} users, {train.num_cols} items, "
          f"{train.indices.size} train edges, batch {cfg.train.batch_size}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=top))
    head = (f"**{cfg.model.name}** (`{path}`): {statistics.median(walls) * 1e3:.0f} ms / step wall, "
            f"{statistics.median(cpus) * 1e3:.0f} ms CPU (median of {steps} after {warmup} warm-up); "
            f"{train.num_rows:,} users, {train.num_cols:,} items, {train.indices.size:,} train edges, "
            f"batch {cfg.train.batch_size}.")
    names = [f"{e.key} {e.input_shapes}" if by_shape else e.key for e in ranked]
    rows = [f"| {name} | {e.self_cpu_time_total / 1e3 / steps:.1f} | {100 * e.self_cpu_time_total / total:.1f} | "
            f"{e.count // steps} |" for name, e in zip(names, ranked)]
    return head, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=["configs/tiktok_lightgcn.yaml", "configs/tiktok_causal.yaml"])
    parser.add_argument("--steps", type=int, default=5, help="steps timed, and as many profiled")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--top", type=int, default=12, help="ops listed, by self CPU time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: one worker's share of 2 cores)")
    parser.add_argument("--by-shape", action="store_true", help="split each op's rows by its input shapes")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=0, world_size=1)
        try:
            sections = [profile_config(path, args.steps, args.warmup, args.top, args.by_shape) for path in args.config]
        finally:
            dist.destroy_process_group()
    lines = [
        "## Profile of one training step",
        "",
        f"`.venv/bin/python benchmarks/profile_step.py --config {' '.join(args.config)} --steps {args.steps} "
        f"--threads {args.threads}{' --by-shape' if args.by_shape else ''}`",
        f"on {machine()}. One process, {args.threads} torch thread(s), world size 1 (gloo), the model built",
        "and sharded exactly as trainer/loop.py does; torch.profiler (CPU) over the profiled steps; ms are",
        "per step; % of all self CPU time in the profiled steps; calls per step.",
    ]
    for head, rows in sections:
        lines += ["", head, "", "| op | self CPU ms / step | % | calls / step |", "|---|---|---|---|", *rows]
    table = "\n".join(lines)
    print(table)
    if not args.no_record:
        names = "-".join(Path(p).stem for p in args.config) + ("-by-shape" if args.by_shape else "")
        record_section(f"profile-{names}", table)


if __name__ == "__main__":
    main()
