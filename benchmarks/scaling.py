"""Throughput and memory of 1 vs 2 workers, full-graph vs sampled training, through the real trainer.

    .venv/bin/python benchmarks/scaling.py [--data data/baby] [--steps 60] [--workers 1,2]
                                           [--fanouts "[10, 10]"] [--no-record]

For each (graph mode, worker count) it runs `trainer.main.fit` (Ray Train, TorchRec sharding, the
same code path as trainer/main.py) on LightGCN for two epochs cut at `--steps` steps each
(`train.max_steps_per_epoch`) and takes the second epoch (the first warms up allocators and thread
pools). Figures: training samples (BPR triples) per second over all workers and per worker, seconds
per step, and the peak resident memory of every worker process (VmHWM, reported by the loop as
`peak_rss_mb_ranks`). Evaluation is cut to 500 sampled users (`eval.sample_users`): this measures
training. Prints a table and records it in docs/BENCHMARKS.md (section scaling). Needs the dataset
(`make data-real` for Baby).

On one 2-core machine, 2 workers share the same 2 cores that 1 worker uses with 2 threads: the
figure shows the cost of the distribution (collectives, duplicated graph work), not a speed-up.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import machine, record_section  # noqa: E402

BATCH = 2048


def measure(data: str, mode: str, workers: int, steps: int, fanouts: str, storage: str) -> dict[str, float]:
    from trainer.config import load_config
    from trainer.main import fit

    overrides = [
        f"--data.url={data}", "--model.name=lightgcn", "--model.num_layers=2",
        f"--model.lightgcn.graph_mode={mode}", f"--train.batch_size={BATCH}", "--train.epochs=2",
        f"--train.max_steps_per_epoch={steps}", "--eval.sample_users=500", f"--scaling.num_workers={workers}",
        f"--scaling.cpus_per_worker={1.0 / workers}", f"--run.storage_path={storage}",
        f"--run.name=scaling-{mode}-w{workers}", "--logging.progress=false",
    ]
    if mode == "sampled":
        overrides.append(f"--model.lightgcn.fanouts={fanouts}")
    summary = fit(load_config(None, overrides))
    epoch = summary["history"][-1]
    seconds = epoch["epoch_seconds"]
    samples = steps * BATCH
    rss = epoch.get("peak_rss_mb_ranks") or [epoch.get("peak_rss_mb", float("nan"))]
    return {"samples_s": samples / seconds, "per_worker_s": samples / seconds / workers,
            "step_s": seconds / steps, "rss": rss}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/baby")
    parser.add_argument("--steps", type=int, default=60, help="steps per timed epoch")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--fanouts", default="[10, 10]", help="model.lightgcn.fanouts of the sampled runs")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    data = str(Path(args.data).resolve())
    if not (Path(data) / "manifest.json").exists():
        raise SystemExit(f"error: no dataset at {data} (make data-real for data/baby)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cimrec-scaling-") as storage:
        for mode in ("full", "sampled"):
            for workers in (int(w) for w in args.workers.split(",")):
                r = measure(data, mode, workers, args.steps, args.fanouts, storage)
                rss = ", ".join(f"{x:.0f}" for x in r["rss"])
                rows.append(f"| {mode}{' ' + args.fanouts if mode == 'sampled' else ''} | {workers} | "
                            f"{r['samples_s']:,.0f} | {r['per_worker_s']:,.0f} | {r['step_s']:.3f} | {rss} |")
                print(rows[-1], flush=True)
    table = "\n".join([
        f"## Scaling: 1 vs 2 workers, full graph vs sampled (LightGCN, {Path(data).name})", "",
        f"`.venv/bin/python benchmarks/scaling.py --data {args.data} --steps {args.steps}` on {machine()}. "
        f"Second of two epochs of {args.steps} steps, batch {BATCH} BPR triples (split over the workers).", "",
        "| graph | workers | samples / s | samples / s / worker | s / step | peak RSS per worker (MiB) |",
        "|---|---|---|---|---|---|", *rows])
    print(table)
    if not args.no_record:
        record_section("scaling", table)


if __name__ == "__main__":
    main()
