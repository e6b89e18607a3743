"""The cost curve: simulator datasets growing 10x, sampled LightGCN on 2 workers through the trainer.

    .venv/bin/python benchmarks/scale.py [--sizes 10000,100000,1000000] [--steps 200] [--workers 2]
                                         [--kernel fused --optimizer rowwise_adagrad] [--eval-users 1000]

Per size N: the simulator (data_loaders/importers/synthetic.py, default parameters, N users and N
items, about 20 N interaction rows of which about 12 N are training edges, modalities
`--modalities`) is generated into `--data-dir` (reused when a dataset with the same parameters is
already there) in a subprocess that reports its wall and CPU time and peak RSS. Then
`trainer.main.fit` (what trainer/main.py runs: Ray Train, TorchRec sharding) trains LightGCN with
`graph_mode: sampled`, fanouts [10, 10], batch 2048 over `--workers` workers for ONE epoch cut at
`--steps` steps (`train.max_steps_per_epoch`; 0 = the full epoch), then evaluates on
`--eval-users` sampled users (`eval.sample_users`: a full ranking of 1M users x 1M items is a
separate question, benchmarks/eval_speed.py).

Figures per size: seconds of that epoch, seconds per step, training interactions per second per
worker (steps x batch / workers / seconds), the full epoch extrapolated from the steps
(s/step x steps per epoch), peak RSS of every worker process (VmHWM, reported by the loop as
`peak_rss_mb_ranks`), and the ratio of the extrapolated epoch to the linear prediction from the
previous size (previous epoch x ratio of training edges): linear scaling is 1.0; the check asks
for <= 2.0. Prints a table and records it in docs/BENCHMARKS.md (section scale).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.record import machine, record_section  # noqa: E402

BATCH = 2048

_GENERATE = """
import json, sys, time
from data_loaders.importers.synthetic import SimulatorParams, generate
def _peak_rss_mb():  # VmHWM: getrusage's ru_maxrss would carry this process's parent's over exec
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
w, c = time.perf_counter(), time.process_time()
m = generate(sys.argv[1], SimulatorParams(num_users=int(sys.argv[2]), num_items=int(sys.argv[2]),
             modalities=sys.argv[3], seed=0), overwrite=True)
print(json.dumps({"wall": time.perf_counter() - w, "cpu": time.process_time() - c, "rss": _peak_rss_mb(),
                  "rows": m.num_interactions, "train": m.splits["train"]}))
"""


def prepare(size: int, data_dir: Path, modalities: str, regenerate: bool) -> dict:
    """The dataset of this size (generated unless an identical one is there) and its generation cost."""
    url = data_dir / f"sim-{size}"
    stats_file = data_dir / f"sim-{size}.generate.json"
    manifest = url / "manifest.json"
    if not regenerate and manifest.exists() and stats_file.exists():
        m = json.loads(manifest.read_text())
        src = m["source"]
        if (src.get("num_users"), src.get("num_items"), src.get("modalities"), src.get("seed")) == (size, size, modalities, 0):
            return {"url": str(url), **json.loads(stats_file.read_text()), "reused": True}
    data_dir.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, "-c", _GENERATE, str(url), str(size), modalities],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    stats_file.write_text(json.dumps(stats))
    return {"url": str(url), **stats, "reused": False}


def train(url: str, size: int, args: argparse.Namespace, storage: str) -> dict:
    from trainer.config import load_config
    from trainer.main import fit

    cfg = load_config(None, [
        f"--data.url={url}", f"--model.name={args.model}", "--model.num_layers=2",
        *MODEL_ARGS[args.model], f"--train.batch_size={BATCH}", "--train.epochs=1", f"--train.max_steps_per_epoch={args.steps}",
        f"--train.embedding_kernel={args.kernel}", f"--train.optimizer={args.optimizer}",
        f"--eval.sample_users={args.eval_users}", f"--scaling.num_workers={args.workers}",
        f"--scaling.cpus_per_worker={1.0 / args.workers}", f"--run.storage_path={storage}",
        f"--run.name=scale-{size}-{args.kernel}", "--logging.progress=false",
    ])
    started = time.perf_counter()
    summary = fit(cfg)
    total = time.perf_counter() - started
    epoch = summary["history"][0]
    # The per-epoch refreshes (the causal model's code prior and subgraph: full passes) happen once
    # per epoch whatever the steps: kept out of the per-step figure, added once to the epoch.
    return {"epoch_s": epoch["epoch_seconds"] - epoch.get("start_epoch_seconds", 0.0),
            "refresh_s": epoch.get("start_epoch_seconds", 0.0), "eval_s": epoch.get("eval_seconds", float("nan")),
            "rss_ranks": epoch.get("peak_rss_mb_ranks", []), "fit_s": total}


def steps_per_epoch(train_edges: int, workers: int) -> int:
    """As data_loaders/sampler.py: full batches plus a last one of at least `workers` edges."""
    full, rest = divmod(train_edges, BATCH)
    return full + (rest >= workers)


DEFAULT_SIZES = "10000,100000,1000000"
# Per model: its sampled mode, fanouts [10, 10]. The causal model with the module sizes of
# configs/tiktok_causal.yaml (64-wide MLPs, contrast on <= 1024 nodes, denoising loss on 2048 items).
MODEL_ARGS = {
    "lightgcn": ["--model.lightgcn.graph_mode=sampled", "--model.lightgcn.fanouts=[10, 10]"],
    "causal": ["--model.causal.backbone.graph_mode=sampled", "--model.causal.backbone.fanouts=[10, 10]",
               "--model.causal.projection.hidden=64", "--model.causal.diffusion.hidden=64",
               "--model.causal.diffusion.loss_items=2048", "--model.causal.contrast.max_nodes=1024"],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help="users = items per dataset, comma-separated, growing (e.g. 10x apart)")
    parser.add_argument("--model", default="lightgcn", choices=sorted(MODEL_ARGS),
                        help="lightgcn, or the causal model (needs --optimizer with a torch twin, e.g. adagrad)")
    parser.add_argument("--steps", type=int, default=200, help="steps of the timed epoch (0: the full epoch)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kernel", default="fused", choices=("fused", "dense"),
                        help="train.embedding_kernel (fused: sparse row updates inside backward)")
    parser.add_argument("--optimizer", default="rowwise_adagrad", help="train.optimizer")
    parser.add_argument("--eval-users", type=int, default=1000, help="eval.sample_users of the closing evaluation")
    parser.add_argument("--modalities", default="image:16,text:16",
                        help="simulator feature dims (LightGCN ignores them; every worker still loads them)")
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "cimrec-scale"),
                        help="where the datasets go (kept and reused between runs)")
    parser.add_argument("--regenerate", action="store_true", help="generate the datasets even if present")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    gen_rows, train_rows, results = [], [], []
    with tempfile.TemporaryDirectory(prefix="cimrec-scale-runs-") as storage:
        for size in sizes:
            data = prepare(size, Path(args.data_dir), args.modalities, args.regenerate)
            gen_rows.append(f"| {size:,} | {size:,} | {data['rows']:,} | {data['wall']:.1f} | {data['cpu']:.1f} | "
                            f"{data['rss']:.0f} |" + (" reused (figures of its generation) |" if data["reused"] else " |"))
            print(gen_rows[-1], flush=True)
            t = train(data["url"], size, args, storage)
            spe = steps_per_epoch(data["train"], args.workers)
            steps = min(args.steps, spe) if args.steps else spe
            per_step = t["epoch_s"] / steps
            full_epoch = per_step * spe + t["refresh_s"]
            ratio = None
            if results:
                prev = results[-1]
                ratio = full_epoch / (prev["full_epoch"] * data["train"] / prev["train"])
            results.append({"size": size, "train": data["train"], "full_epoch": full_epoch, "ratio": ratio})
            rate = steps * (BATCH / args.workers) / t["epoch_s"]
            rss = " / ".join(f"{r:.0f}" for r in t["rss_ranks"])
            train_rows.append(f"| {size:,} | {data['train']:,} | {steps} of {spe} | {t['epoch_s']:.1f} | "
                              f"{per_step * 1e3:.0f} | {rate:,.0f} | {full_epoch:,.0f} | "
                              f"{'-' if ratio is None else f'{ratio:.2f}'} | {rss} | {t['refresh_s']:.1f} | "
                              f"{t['eval_s']:.1f} | {t['fit_s']:.0f} |")
            print(train_rows[-1], flush=True)

    verdict = ""
    if len(results) >= 2:
        last = results[-1]
        verdict = (f"\n\nLargest size ({last['size']:,}): extrapolated epoch {last['full_epoch']:,.0f} s, "
                   f"{last['ratio']:.2f}x the linear prediction from {results[-2]['size']:,} "
                   f"({'within' if last['ratio'] <= 2 else 'NOT within'} 2x).")
    steps_text = "the full epoch" if not args.steps else f"the first {args.steps} steps of one epoch (`train.max_steps_per_epoch`)"
    table = "\n".join([
        f"## Cost curve: sampled {MODEL_TITLES[args.model]}, {args.workers} workers ({args.kernel} {args.optimizer} tables)",
        "",
        f"`.venv/bin/python benchmarks/scale.py --model {args.model} --sizes {args.sizes} --steps {args.steps} "
        f"--workers {args.workers} --kernel {args.kernel} --optimizer {args.optimizer} --eval-users {args.eval_users}`",
        f"on {machine()}.",
        f"Simulator defaults with N users, N items, modalities {args.modalities}; {MODEL_TITLES[args.model]} in its "
        f"sampled mode (`{' '.join(MODEL_ARGS[args.model])}`),",
        f"64-d, batch {BATCH}, through `trainer.main.fit` (Ray Train, TorchRec tables);",
        f"timed: {steps_text}; the closing evaluation ranks every item for {args.eval_users} sampled users.",
        "",
        "Generation (one process, streamed into the writer):",
        "",
        "| users | items | interaction rows | s (wall) | s (CPU) | peak RSS (MiB) | |",
        "|---|---|---|---|---|---|---|",
        *gen_rows,
        "",
        "Training (ratio = extrapolated epoch / (previous one x ratio of training edges); 1.0 is linear):",
        "",
        "| users = items | train edges | steps timed | s (wall) | ms / step | interactions / s / worker "
        "| full epoch (s, extrapolated) | ratio to linear | peak RSS per worker (MiB) | epoch refreshes s | eval s "
        "| fit s (all) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *train_rows,
    ]) + verdict
    print(table)
    if not args.no_record:
        record_section(section_name(args.kernel, args.steps, args.sizes, args.model), table)


MODEL_TITLES = {"lightgcn": "LightGCN", "causal": "causal model"}


def section_name(kernel: str, steps: int, sizes: str, model: str = "lightgcn") -> str:
    """docs/BENCHMARKS.md section of a run: model (unless LightGCN), kernel, steps, and the sizes unless
    they are the default (so that a run over other sizes adds a section instead of replacing another's)."""
    name = f"scale-{'' if model == 'lightgcn' else model + '-'}{kernel}-{f'{steps}steps' if steps else 'epoch'}"
    if sizes == DEFAULT_SIZES:
        return name
    short = {10 ** 3: "k", 10 ** 6: "m"}
    labels = []
    for n in (int(x) for x in sizes.split(",")):
        unit = max((u for u in short if n % u == 0), default=None)
        labels.append(f"{n // unit}{short[unit]}" if unit else str(n))
    return f"{name}-{'-'.join(labels)}"


if __name__ == "__main__":
    main()
