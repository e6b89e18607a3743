"""Seconds per training epoch and per full evaluation, 1 and 2 workers, through the real trainer.

    .venv/bin/python benchmarks/epoch_time.py [--data data/baby] [--epochs 3] [--model lightgcn]
    .venv/bin/python benchmarks/epoch_time.py --config configs/tiktok_causal.yaml [--epochs 4] [--workers 1]
                                              [--no-record]
    .venv/bin/python benchmarks/epoch_time.py --config configs/tiktok_causal.yaml --data data/baby \
                                              --stand-in-features image:4096,text:384

Runs `trainer.main.fit` (Ray Train, TorchRec DMP) for a few epochs with evaluation every epoch,
drops the first epoch (warm-up: allocator, thread pools) and reports the median of the rest, and
the training throughput: an epoch is one pass over the training interactions, so interactions per
second per worker = training interactions / s per epoch / workers.
Prints a table and records it in docs/BENCHMARKS.md. Needs `make data-real` first for Baby.
`--data` with `--config` replaces the config's dataset; `--stand-in-features` trains on a copy of
it with random item features of those sizes (benchmarks/stand_in.py: Baby has no features here),
which times a content model and says so in the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import machine, record_section  # noqa: E402
from benchmarks.stand_in import parse_spec, with_stand_in_features  # noqa: E402
from data_loaders.stream import open_dataset  # noqa: E402
from trainer.config import load_config  # noqa: E402
from trainer.main import fit  # noqa: E402


def measure(config: str | None, data: str, model: str, workers: int, epochs: int, storage: str) -> dict[str, float]:
    # With --config its model; otherwise the default config with --model. The data is always `data`.
    chosen = [f"--data.url={data}"] + ([] if config else [f"--model.name={model}"])
    cfg = load_config(config, [
        *chosen, f"--scaling.num_workers={workers}", "--scaling.threads_per_worker=0",
        f"--scaling.cpus_per_worker={1.0 / workers}", f"--train.epochs={epochs}", "--train.eval_every=1",
        f"--run.storage_path={storage}", f"--run.name={model}-w{workers}", "--logging.progress=false",
    ])
    history = fit(cfg)["history"][1:]
    return {"epoch_s": statistics.median(h["epoch_seconds"] for h in history),
            "eval_s": statistics.median(h["eval_seconds"] for h in history)}


def _worker_counts(text: str) -> str:
    """--workers: positive integers separated by commas (argparse reports anything else)."""
    if not all(w.strip().isdigit() and int(w) > 0 for w in text.split(",")):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return text


def _features_spec(text: str) -> dict[str, int]:
    """--stand-in-features: argparse shows an ArgumentTypeError's own message (a ValueError's it hides)."""
    try:
        return parse_spec(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a YAML experiment file (its data and model); else the default config "
                                         "with --data and --model")
    parser.add_argument("--data", default=None, help="dataset (default data/baby; with --config: the config's)")
    parser.add_argument("--stand-in-features", type=_features_spec, default=None, metavar="NAME:SIZE,...",
                        help="train on a copy of --data with random item features of these sizes (timing only)")
    parser.add_argument("--model", default="lightgcn")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", default="1,2", type=_worker_counts,
                        help="worker counts measured, comma-separated")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    data_override = args.data is not None
    if args.config:
        cfg = load_config(args.config)
        args.data, args.model = args.data or cfg.data.url, cfg.model.name
        what = f"`{args.config}` (batch {cfg.train.batch_size})"
        command = f"--config {args.config}" + (f" --data {args.data}" if data_override else "") + f" --epochs {args.epochs}"
    else:
        args.data = args.data or "data/baby"
        what = "the default config (batch 2048, 64-d, 2 layers, dense Adam tables)"
        command = f"--data {args.data} --model {args.model} --epochs {args.epochs}"
    if args.workers != "1,2":
        command += f" --workers {args.workers}"
    dataset_name = Path(args.data).name
    if args.stand_in_features:
        spec = ",".join(f"{m}:{n}" for m, n in args.stand_in_features.items())
        command += f" --stand-in-features {spec}"
        what += (f"; item features: **random stand-ins** of sizes {spec} (benchmarks/stand_in.py; the real ones are "
                 "not available here): a timing, not a result")
    train_rows = open_dataset(args.data).manifest.splits["train"]
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        if args.stand_in_features:
            args.data = with_stand_in_features(args.data, str(Path(storage) / "stand-in"), args.stand_in_features)
        for workers in (int(w) for w in args.workers.split(",")):  # checked by _worker_counts
            m = measure(args.config, args.data, args.model, workers, args.epochs, storage)
            rate = train_rows / m["epoch_s"] / workers
            rows.append(f"| {args.model} | {dataset_name} | {workers} | {m['epoch_s']:.2f} | {rate:,.0f} | "
                        f"{m['eval_s']:.2f} |")
            print(rows[-1], flush=True)
    table = "\n".join([
        f"## Epoch and evaluation time ({args.model}, {dataset_name})",
        "",
        f"`.venv/bin/python benchmarks/epoch_time.py {command}`",
        f"on {machine()}. Median over epochs 2..{args.epochs}; evaluation = all valid users, full ranking,",
        f"users split over workers; torch threads = the cores / workers. {what}. An epoch = the",
        f"{train_rows:,} training interactions.",
        "",
        "| model | data | workers | s / training epoch | interactions / s / worker | s / full evaluation |",
        "|---|---|---|---|---|---|",
        *rows,
    ])
    print(table)
    name = Path(args.config).stem if args.config else f"{args.model}-{dataset_name}"
    if args.config and (data_override or args.stand_in_features):  # not the config's own section
        name += f"-{dataset_name}"
    if not args.no_record:
        record_section(f"epoch_time-{name}", table)


if __name__ == "__main__":
    main()
